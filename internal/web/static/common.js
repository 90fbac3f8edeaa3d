// loadwatch dashboard shared helpers (no framework, no build step).
"use strict";
const LW = (() => {
  let session = null;
  async function getSession() {
    if (session) return session;
    const r = await fetch("/ui/api/session", {credentials: "same-origin"});
    session = await r.json();
    return session;
  }
  async function getJSON(path) {
    const r = await fetch(path, {credentials: "same-origin"});
    if (r.status === 401) { location.href = "/login?next=" + encodeURIComponent(location.pathname); throw new Error("sign in to read"); }
    const body = await r.json().catch(() => ({}));
    if (!r.ok) throw new Error(body.error || ("HTTP " + r.status));
    return body;
  }
  async function send(method, path, body) {
    const s = await getSession();
    const r = await fetch(path, {method, credentials: "same-origin",
      headers: {"Content-Type": "application/json", "X-CSRF-Token": s.csrf || ""},
      body: body === undefined ? undefined : JSON.stringify(body)});
    const out = await r.json().catch(() => ({}));
    if (!r.ok && r.status !== 202) throw new Error(out.error || ("HTTP " + r.status));
    return out;
  }
  async function query(q, t) {
    const p = new URLSearchParams({query: q});
    if (t) p.set("time", String(t));
    const b = await getJSON("/ui/api/v1/query?" + p);
    return b.data.result;
  }
  async function queryRange(q, start, end, step) {
    const p = new URLSearchParams({query: q, start: String(start), end: String(end), step: String(step)});
    const b = await getJSON("/ui/api/v1/query_range?" + p);
    return b.data.result;
  }
  function fmt(v, digits, unit) {
    if (v === null || v === undefined || Number.isNaN(v)) return "—";
    return Number(v).toFixed(digits) + (unit ? " " + unit : "");
  }
  function ago(iso) {
    if (!iso) return "never";
    const s = Math.max(0, (Date.now() - Date.parse(iso)) / 1000);
    if (s < 60) return Math.round(s) + " s ago";
    if (s < 3600) return Math.round(s / 60) + " min ago";
    if (s < 86400) return Math.round(s / 3600) + " h ago";
    return Math.round(s / 86400) + " d ago";
  }
  const palette = ["#0b57d0", "#b3261e", "#136c2e", "#8a5300", "#6a1b9a", "#00695c", "#c2185b", "#37474f", "#ef6c00", "#1565c0"];
  function classColor(name) {
    if (!name) return "#9aa4ae";
    let h = 0;
    for (const c of name) h = (h * 31 + c.charCodeAt(0)) >>> 0;
    return palette[h % palette.length];
  }
  function el(tag, attrs, ...kids) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === "class") e.className = v; else if (k === "text") e.textContent = v; else e.setAttribute(k, v);
    }
    for (const k of kids) e.append(k);
    return e;
  }
  // header fills the sign-in state of the page header.
  async function header() {
    const s = await getSession();
    const box = document.getElementById("who");
    if (!box) return s;
    box.textContent = "";
    if (s.user) {
      const b = el("button", {type: "button", text: "Sign out"});
      b.addEventListener("click", async () => { await send("POST", "/logout"); session = null; location.reload(); });
      box.append(el("span", {class: "muted", text: "Signed in as " + s.user + " "}), b);
    } else if (s.can_login) {
      box.append(el("a", {href: "/login?next=" + encodeURIComponent(location.pathname), text: "Sign in"}));
    }
    return s;
  }
  // stream opens the live events stream and reconnects on its own.
  function stream(params, handlers) {
    const p = new URLSearchParams(params || {});
    const es = new EventSource("/ui/api/v1/events/stream" + (p.toString() ? "?" + p : ""));
    for (const [type, fn] of Object.entries(handlers)) {
      es.addEventListener(type, ev => { try { fn(JSON.parse(ev.data)); } catch (e) { console.warn("bad event", e); } });
    }
    return es;
  }
  return {getSession, getJSON, send, query, queryRange, fmt, ago, classColor, el, header, stream};
})();
