"use strict";
(async () => {
  LW.header();
  const msg = document.getElementById("ota-msg");
  const td = (t, cls) => LW.el("td", cls ? {text: t, class: cls} : {text: t});
  async function load() {
    let st;
    try {
      const r = await fetch("/ui/api/v1/ota/status", {credentials: "same-origin"});
      if (r.status === 404) { msg.textContent = "The OTA status API is not enabled on this server."; return; }
      st = await r.json();
      if (!r.ok) throw new Error(st.error || "HTTP " + r.status);
    } catch (e) { msg.textContent = "Cannot load OTA status: " + e.message; return; }
    msg.textContent = (st.rollouts || []).length + " rollouts, " + (st.devices || []).length + " devices reporting.";
    const rb = document.querySelector("#rollouts tbody");
    rb.textContent = "";
    for (const ro of st.rollouts || []) {
      const res = Object.values(ro.results || {});
      const good = res.filter(Boolean).length;
      rb.append(LW.el("tr", {}, td(ro.channel), td(ro.os + "/" + ro.arch), td(ro.stable || "—"), td(ro.candidate || "—"),
        td(ro.candidate ? ro.percent + " %" : "—", "num"), td(ro.halted ? "halted: " + (ro.halt_reason || "") : ro.candidate ? "rolling out" : "stable"),
        td(res.length ? good + " good, " + (res.length - good) + " failed" : "—"), td((ro.releases || []).map(m => m.version).join(", "))));
    }
    const db = document.querySelector("#ota-devices tbody");
    db.textContent = "";
    for (const d of st.devices || []) {
      const lr = d.last_result;
      db.append(LW.el("tr", {}, LW.el("th", {scope: "row", text: d.device}), td(d.running || "—"), td(d.offered || "—"),
        td(lr ? (lr.ok ? "ok " : "failed ") + (lr.version || "") + (lr.detail ? ": " + lr.detail : "") : "—"), td(LW.ago(d.last_seen))));
    }
  }
  load();
  setInterval(load, 15000);
})();
