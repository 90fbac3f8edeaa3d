"use strict";
(() => {
  const tbody = document.querySelector("#fleet tbody");
  const summary = document.getElementById("summary");
  const filter = document.getElementById("filter");
  const rows = new Map();   // id -> {tr, cells, dev}
  let relays = {};
  let dirty = new Set();

  function rowFor(id) {
    let r = rows.get(id);
    if (r) return r;
    const tr = LW.el("tr", {"data-device": id});
    const cells = {};
    for (const k of ["id", "state", "power", "class", "relay", "firmware", "seen", "link"]) {
      const td = LW.el(k === "id" ? "th" : "td", k === "id" ? {scope: "row"} : {});
      if (k === "power") td.className = "num";
      if (k === "firmware" || k === "link") td.classList.add("hide-narrow");
      cells[k] = td;
      tr.append(td);
    }
    cells.id.append(LW.el("a", {href: "/device/" + encodeURIComponent(id), text: id}));
    r = {tr, cells, dev: {id}};
    rows.set(id, r);
    return r;
  }

  function render(r) {
    const d = r.dev, c = r.cells;
    c.state.textContent = "";
    c.state.append(LW.el("span", {class: "badge st-" + (d.state || "offline"), text: d.state || "offline"}));
    c.power.textContent = LW.fmt(d.power, 1, "W");
    c.class.textContent = d.class ? d.class + " (" + Math.round((d.confidence || 0) * 100) + " %)" : "—";
    const rl = relays[d.id];
    c.relay.textContent = "";
    c.relay.append(LW.el("span", {class: rl ? "relay-" + rl.state : "muted", text: rl ? rl.state : "unknown"}));
    c.firmware.textContent = d.firmware || "—";
    c.seen.textContent = LW.ago(d.last_seen);
    c.seen.title = d.last_seen || "";
    renderLink(c.link, d);
    const f = filter.value.trim().toLowerCase();
    r.tr.hidden = f !== "" && !d.id.toLowerCase().includes(f) && !(d.class || "").toLowerCase().includes(f);
  }

  // linkText describes every counter of every meter address (tooltip and
  // screen-reader text).
  function linkText(link, at) {
    const parts = Object.keys(link).sort((a, b) => a - b).map(a => {
      const l = link[a];
      return "meter " + a + ": " + l.requests + " requests, " + l.replies + " replies, " + l.crc_errors + " CRC errors, " +
        l.timeouts + " timeouts, " + l.exceptions + " exceptions, " + l.short_frames + " short frames, " + l.resyncs + " resyncs, " +
        l.retries + " retries, " + l.other + " other; last reply " + l.last_latency_ms + " ms";
    });
    return parts.join("; ") + ". Counted by the agent since it started" + (at ? ", reported " + LW.ago(at) : "") + ".";
  }

  // renderLink fills the Link cell: CRC errors and timeouts summed over the
  // device's meters (amber above 1 % of requests), then readings stored
  // and a clock skew of a second or more.
  function renderLink(td, d) {
    td.textContent = "";
    const skew = d.clock_skew_seconds;
    const rest = (d.readings || 0) + " readings" + (skew !== null && skew !== undefined && Math.abs(skew) >= 1 ? ", clock " + skew.toFixed(1) + " s" : "");
    if (!d.link) {
      td.title = "No link counters reported";
      td.append(LW.el("span", {class: "muted", "aria-hidden": "true", text: "— · "}), rest);
      return;
    }
    let req = 0, crc = 0, to = 0, bad = 0;
    for (const l of Object.values(d.link)) {
      req += l.requests; crc += l.crc_errors; to += l.timeouts;
      bad += l.crc_errors + l.timeouts + l.short_frames + l.exceptions + l.other;
    }
    const full = linkText(d.link, d.link_time);
    td.title = full;
    td.append(LW.el("span", {class: "link" + (req > 0 && bad / req > 0.01 ? " link-warn" : ""), "aria-hidden": "true", text: crc + " CRC · " + to + " timeouts"}),
      LW.el("span", {class: "sr-only", text: full + " "}), LW.el("span", {"aria-hidden": "true", text: " · "}), rest);
  }

  function flush() {
    for (const id of dirty) render(rows.get(id));
    dirty.clear();
  }
  let scheduled = false;
  function schedule() {
    if (scheduled) return;
    scheduled = true;
    requestAnimationFrame(() => { scheduled = false; flush(); });
  }

  async function load() {
    try {
      const [devs, rl] = await Promise.all([LW.getJSON("/ui/api/v1/devices"), LW.getJSON("/ui/api/relays")]);
      relays = rl;
      const seen = new Set();
      const frag = document.createDocumentFragment();
      for (const d of devs) {
        seen.add(d.id);
        const isNew = !rows.has(d.id);
        const r = rowFor(d.id);
        r.dev = d;
        if (isNew) frag.append(r.tr);
        dirty.add(d.id);
      }
      for (const [id, r] of rows) if (!seen.has(id)) { r.tr.remove(); rows.delete(id); }
      tbody.append(frag);
      // keep rows sorted by id
      const sorted = [...rows.keys()].sort();
      sorted.forEach(id => tbody.append(rows.get(id).tr));
      flush();
      const n = {online: 0, asleep: 0, offline: 0};
      for (const d of devs) n[d.state] = (n[d.state] || 0) + 1;
      if (!document.body.dataset.loadedMs) document.body.dataset.loadedMs = String(Math.round(performance.now()));
      summary.textContent = devs.length + " devices: " + n.online + " online, " + n.asleep + " asleep, " + n.offline + " offline.";
    } catch (e) {
      summary.textContent = "Cannot load devices: " + e.message;
      summary.classList.add("error");
    }
  }

  filter.addEventListener("input", () => { for (const id of rows.keys()) dirty.add(id); schedule(); });
  LW.header().then(s => {
    if (!s.user || !s.features.includes("alerts")) return;
    const b = document.getElementById("test-alert"), st = document.getElementById("alert-status");
    b.classList.remove("hidden");
    b.addEventListener("click", async () => {
      st.className = "status"; st.textContent = "Sending…";
      try {
        const r = await fetch("/ui/api/alerts/test", {method: "POST", credentials: "same-origin", headers: {"X-CSRF-Token": s.csrf}});
        const res = await r.json();
        if (!Array.isArray(res)) throw new Error(res.error || "HTTP " + r.status);
        st.className = "status " + (res.every(x => x.ok) ? "ok" : "error");
        st.textContent = res.length ? res.map(x => x.target + ": " + (x.ok ? "delivered" : x.error)).join("; ") : "No alert targets configured.";
      } catch (e) { st.className = "status error"; st.textContent = e.message; }
    });
  });
  load();
  setInterval(load, 10000);
  LW.stream({type: "reading,status,ack,anomaly"}, {
    reading: e => {
      const r = rows.get(e.device);
      if (!r) { load(); return; }
      Object.assign(r.dev, {power: e.power ?? r.dev.power, state: "online", last_seen: new Date().toISOString()});
      if (e.class) { r.dev.class = e.class; r.dev.confidence = e.confidence; }
      dirty.add(e.device); schedule();
    },
    status: e => {
      if (e.relay) relays[e.device] = {state: e.relay, since: e.ts};
      const r = rows.get(e.device); if (r) { r.dev.state = e.status === "offline" ? "offline" : "online"; if (e.firmware) r.dev.firmware = e.firmware; dirty.add(e.device); schedule(); }
    },
    ack: e => { if (e.ack && e.ack.state) { relays[e.device] = {state: e.ack.state, since: e.ts}; if (rows.has(e.device)) { dirty.add(e.device); schedule(); } } },
    anomaly: e => {
      const m = {relay_trip: "tripped", relay_latch: "latched", relay_reset: "closed", relay_recover: "closed"}[e.kind];
      if (m && e.source === "device") { relays[e.device] = {state: m, since: e.ts}; if (rows.has(e.device)) { dirty.add(e.device); schedule(); } }
    },
  });
})();
