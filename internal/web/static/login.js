"use strict";
(() => {
  const q = new URLSearchParams(location.search);
  const next = q.get("next") || "/";
  document.getElementById("next").value = next;
  const msg = document.getElementById("msg");
  if (q.get("error")) msg.textContent = "Wrong user name or password.";
  document.getElementById("login").addEventListener("submit", async ev => {
    ev.preventDefault();
    msg.textContent = "";
    const body = {user: document.getElementById("user").value, password: document.getElementById("password").value, next};
    const r = await fetch("/login", {method: "POST", credentials: "same-origin", headers: {"Content-Type": "application/json"}, body: JSON.stringify(body)});
    const out = await r.json().catch(() => ({}));
    if (!r.ok) { msg.textContent = out.error || "Sign-in failed."; return; }
    location.href = out.next || "/";
  });
})();
