"use strict";
(() => {
  const id = decodeURIComponent(location.pathname.split("/").pop());
  const sel = '{device="' + id.replace(/["\\]/g, "\\$&") + '"}';
  document.getElementById("title").textContent = "Device " + id;
  document.title = id + " · loadwatch";

  const metrics = {
    power: {name: "loadwatch_power_watts", field: "power", color: "#0b57d0", digits: 1},
    voltage: {name: "loadwatch_voltage_volts", field: "voltage", color: "#136c2e", digits: 1},
    current: {name: "loadwatch_current_amperes", field: "current", color: "#8a5300", digits: 3},
    pf: {name: "loadwatch_power_factor_ratio", field: "pf", color: "#6a1b9a", digits: 2},
    frequency: {name: "loadwatch_frequency_hertz", field: "frequency", color: "#00695c", digits: 2},
  };
  let range = 3600;           // seconds shown when live
  let zoom = null;            // {from, to} in seconds when zoomed
  let labelMode = false;
  let band = [];              // [{from, to, cls}]
  let events = [];            // [{t, kind}]
  let pending = false;
  let session = {features: []};
  const has = f => session.features.includes(f);

  // --- charts ---
  function width() { return Math.max(280, document.getElementById("main").clientWidth - 8); }
  const eventPlugin = {hooks: {draw: [u => {
    const ctx = u.ctx, {top, height} = u.bbox;
    ctx.save();
    ctx.lineWidth = 2 * devicePixelRatio;
    ctx.setLineDash([4 * devicePixelRatio, 3 * devicePixelRatio]);
    for (const e of events) {
      if (e.t < u.scales.x.min || e.t > u.scales.x.max) continue;
      const x = Math.round(u.valToPos(e.t, "x", true));
      ctx.strokeStyle = /surge|over|under|trip|latch|frequency/.test(e.kind) ? "#b3261e" : "#4a5562";
      ctx.beginPath(); ctx.moveTo(x, top); ctx.lineTo(x, top + height); ctx.stroke();
    }
    ctx.restore();
  }]}};
  function makeChart(key) {
    const m = metrics[key];
    const opts = {
      width: width(), height: key === "power" ? 220 : 140,
      cursor: {sync: {key: "lw"}, drag: {x: true, y: false, setScale: false}},
      scales: {x: {time: true}},
      series: [{}, {label: key, stroke: m.color, width: 1.5, spanGaps: false,
        value: (u, v) => v == null ? "—" : v.toFixed(m.digits)}],
      axes: [{}, {size: 60}],
      legend: {show: key === "power"},
      plugins: [eventPlugin],
      hooks: {setSelect: [u => onSelect(u)], setScale: [u => { if (key === "power") drawBand(); }]},
    };
    m.data = [[], []];
    m.u = new uPlot(opts, m.data, document.getElementById("chart-" + key));
  }

  function onSelect(u) {
    if (u.select.width < 3) return;
    const from = u.posToVal(u.select.left, "x"), to = u.posToVal(u.select.left + u.select.width, "x");
    u.setSelect({left: 0, top: 0, width: 0, height: 0}, false);
    if (labelMode) { setLabelSpan(from, to); return; }
    zoom = {from, to};
    document.getElementById("unzoom").classList.remove("hidden");
    load();
  }

  function window_() {
    const now = Date.now() / 1000;
    return zoom ? [zoom.from, zoom.to] : [now - range, now];
  }

  function series(res) {
    const xs = [], ys = [];
    if (res.length) for (const [t, v] of res[0].values) { xs.push(t); ys.push(Number(v)); }
    return [xs, ys];
  }

  async function load() {
    const [start, end] = window_();
    const step = Math.max(1, Math.ceil((end - start) / width()));
    document.getElementById("range-info").textContent = (zoom ? "Zoomed: " : "Live: ") +
      new Date(start * 1000).toLocaleString() + " – " + new Date(end * 1000).toLocaleString() + ", one point per " + step + " s";
    const q = m => step < 60 ? m.name + sel : "avg_over_time(" + m.name + sel + "[" + step + "s])";
    try {
      const jobs = Object.values(metrics).map(m => LW.queryRange(q(m), start, end, step).then(r => { m.data = series(r); }));
      jobs.push(LW.queryRange("timestamp(loadwatch_class_confidence_ratio" + sel + ")", start, end, step).then(r => { band = bandFrom(r, step); }));
      jobs.push(LW.queryRange("count_over_time(loadwatch_events" + sel + "[" + step + "s])", start, end, step).then(r => {
        events = [];
        for (const s of r) for (const [t] of s.values) events.push({t: t - step / 2, kind: s.metric.event || "event"});
      }));
      await Promise.all(jobs);
      for (const m of Object.values(metrics)) { m.u.setData(m.data, false); m.u.setScale("x", {min: start, max: end}); }
      drawBand();
    } catch (e) {
      document.getElementById("range-info").textContent = "Cannot load the charts: " + e.message;
    }
  }

  // bandFrom turns per-class sample timestamps into segments: at each step
  // the class with the newest sample holds.
  function bandFrom(res, step) {
    const at = new Map();
    for (const s of res) for (const [t, v] of s.values) {
      const cur = at.get(t);
      if (!cur || Number(v) > cur.v) at.set(t, {v: Number(v), cls: s.metric.class});
    }
    const ts = [...at.keys()].sort((a, b) => a - b);
    const out = [];
    for (const t of ts) {
      const cls = at.get(t).cls, last = out[out.length - 1];
      if (last && last.cls === cls && t - last.to <= step * 1.5) last.to = t;
      else out.push({from: t - step, to: t, cls});
    }
    return out;
  }

  function drawBand() {
    const u = metrics.power.u, el = document.getElementById("band"), leg = document.getElementById("band-legend");
    if (!u) return;
    const wrap = u.root.getBoundingClientRect(), over = u.over.getBoundingClientRect();
    el.style.marginLeft = (over.left - wrap.left) + "px";
    el.style.width = over.width + "px";
    el.textContent = "";
    const classes = new Set();
    const min = u.scales.x.min, max = u.scales.x.max;
    for (const s of band) {
      if (s.to < min || s.from > max) continue;
      const l = Math.max(0, u.valToPos(Math.max(s.from, min), "x")), r = Math.min(over.width, u.valToPos(Math.min(s.to, max), "x"));
      const span = LW.el("span", {title: s.cls + ": " + new Date(s.from * 1000).toLocaleTimeString() + "–" + new Date(s.to * 1000).toLocaleTimeString()});
      span.style.left = l + "px"; span.style.width = Math.max(1, r - l) + "px"; span.style.background = LW.classColor(s.cls);
      el.append(span);
      classes.add(s.cls);
    }
    el.dataset.classes = [...classes].join(",");
    el.setAttribute("aria-label", classes.size ? "Classes in view: " + [...classes].join(", ") : "No class in view");
    leg.textContent = "";
    for (const c of classes) { const i = LW.el("i"); i.style.background = LW.classColor(c); leg.append(LW.el("span", {}, i, c)); }
    const dl = document.getElementById("known-classes");
    for (const c of classes) if (![...dl.options].some(o => o.value === c)) dl.append(LW.el("option", {value: c}));
  }

  // --- live ---
  function onReading(e) {
    const t = Date.parse(e.ts) / 1000;
    updateNow(e);
    if (zoom || range > 3600) return;
    for (const m of Object.values(metrics)) {
      const v = e[m.field];
      if (v === undefined || v === null) continue;
      m.data[0].push(t); m.data[1].push(v);
      const cut = t - range;
      while (m.data[0].length && m.data[0][0] < cut) { m.data[0].shift(); m.data[1].shift(); }
    }
    if (e.class) {
      const last = band[band.length - 1];
      if (last && last.cls === e.class) last.to = Math.max(last.to, t);
      else band.push({from: last ? Math.max(last.to, t - 1) : t - 1, to: t, cls: e.class});
    }
    if (!pending) {
      pending = true;
      requestAnimationFrame(() => {
        pending = false;
        const now = Date.now() / 1000;
        for (const m of Object.values(metrics)) { m.u.setData(m.data, false); m.u.setScale("x", {min: now - range, max: now}); }
        drawBand();
        document.getElementById("chart-power").dataset.points = String(metrics.power.data[0].length);
        document.getElementById("chart-power").dataset.live = String((Number(document.getElementById("chart-power").dataset.live) || 0) + 1);
      });
    }
  }

  function updateNow(d) {
    document.getElementById("now-power").textContent = LW.fmt(d.power, 1, "W");
    document.getElementById("now-detail").textContent = [LW.fmt(d.voltage, 1, "V"), LW.fmt(d.current, 3, "A"),
      "PF " + LW.fmt(d.pf, 2), LW.fmt(d.frequency, 2, "Hz")].join(" · ");
    if (d.class) document.getElementById("now-class").textContent = d.class + " (" + Math.round((d.confidence || 0) * 100) + " %)";
  }
  function setState(s) {
    const b = document.getElementById("now-state");
    b.textContent = s; b.className = "badge st-" + s;
  }
  function setRelay(s) {
    const r = document.getElementById("now-relay");
    r.textContent = s || "unknown"; r.className = s ? "relay-" + s : "muted";
  }

  // --- events list ---
  function addEvent(e, prepend) {
    const tb = document.querySelector("#events tbody");
    const tr = LW.el("tr", {}, LW.el("td", {text: new Date(e.ts).toLocaleString()}), LW.el("td", {text: e.kind}),
      LW.el("td", {text: e.source || ""}), LW.el("td", {text: e.detail || ""}));
    if (prepend) tb.prepend(tr); else tb.append(tr);
    document.getElementById("events-empty").classList.add("hidden");
  }

  // --- energy ---
  async function loadEnergy() {
    const box = document.getElementById("energy");
    if (!has("energy")) { document.getElementById("energy-card").classList.add("hidden"); return; }
    try {
      const e = await LW.getJSON("/ui/api/devices/" + encodeURIComponent(id) + "/energy");
      const cur = e.currency ? " " + e.currency : "";
      const t = LW.el("table", {}, LW.el("thead", {}, LW.el("tr", {}, LW.el("th", {scope: "col", text: "Period"}),
        LW.el("th", {scope: "col", class: "num", text: "kWh"}), LW.el("th", {scope: "col", class: "num", text: "Cost" + cur}))));
      const tb = LW.el("tbody");
      for (const p of e.periods) {
        tb.append(LW.el("tr", {}, LW.el("th", {scope: "row", text: p.name}), LW.el("td", {class: "num", text: p.kwh.toFixed(3)}), LW.el("td", {class: "num", text: p.cost.toFixed(2)})));
      }
      t.append(tb);
      box.textContent = "";
      box.append(t);
      const month = e.periods[e.periods.length - 1];
      if (month && month.by_class.length) {
        const ul = LW.el("ul");
        for (const c of month.by_class) ul.append(LW.el("li", {text: c.class + ": " + c.kwh.toFixed(3) + " kWh, " + c.cost.toFixed(2) + cur}));
        box.append(LW.el("p", {class: "muted", text: "This month by appliance (estimate):"}), ul);
      }
      box.append(LW.el("p", {class: "muted", text: "Price now " + e.price_now + cur + "/kWh"}));
    } catch (err) { box.textContent = "Cannot load energy: " + err.message; }
  }

  // --- commands ---
  async function command(kind, args, btn) {
    const st = document.getElementById("cmd-status");
    st.className = "status"; st.textContent = kind + ": sent, waiting for the device…";
    if (btn) btn.disabled = true;
    try {
      const c = await LW.send("POST", "/ui/api/devices/" + encodeURIComponent(id) + "/commands", args ? {kind, args} : {kind});
      if (c.status === "done") {
        st.className = "status ok";
        st.textContent = kind + ": acknowledged" + (c.state ? ", relay " + c.state : "") + ".";
        if (c.state) setRelay(c.state);
      } else if (c.status === "failed") {
        st.className = "status error"; st.textContent = kind + ": the device refused it: " + (c.error || "no reason");
      } else {
        st.textContent = kind + ": queued; the device has not answered yet (it may be asleep). Command " + c.id + ".";
      }
    } catch (e) { st.className = "status error"; st.textContent = kind + ": " + e.message; }
    if (btn) btn.disabled = false;
  }

  // --- labelling ---
  let span = null;
  function setLabelSpan(from, to) {
    span = {from, to};
    document.getElementById("label-from").value = new Date(from * 1000).toISOString();
    document.getElementById("label-to").value = new Date(to * 1000).toISOString();
    document.getElementById("label-save").disabled = false;
  }
  async function loadLabels() {
    const tb = document.querySelector("#labels tbody");
    const ls = await LW.getJSON("/ui/api/labels?device=" + encodeURIComponent(id));
    tb.textContent = "";
    for (const l of ls) {
      const del = LW.el("button", {type: "button", text: "Delete", "aria-label": "Delete label " + l.label + " from " + l.from});
      del.disabled = !session.user;
      del.addEventListener("click", async () => { await LW.send("DELETE", "/ui/api/labels/" + encodeURIComponent(l.id)); loadLabels(); });
      tb.append(LW.el("tr", {}, LW.el("td", {text: new Date(l.from).toLocaleString()}), LW.el("td", {text: new Date(l.to).toLocaleString()}),
        LW.el("td", {text: l.label}), LW.el("td", {text: l.user || ""}), LW.el("td", {}, del)));
    }
  }
  function showModel(st) {
    const m = st.model;
    document.getElementById("model-info").textContent = m ? "In use: version " + m.version + " (" + m.source + ", loaded " + new Date(m.loaded_at).toLocaleString() + ")" +
      (st.previous ? "; previous: version " + st.previous.version : "") : "No model loaded.";
    document.getElementById("model-info").dataset.version = m ? String(m.version) : "";
    document.getElementById("rollback").classList.toggle("hidden", !st.previous || !session.user);
    const j = st.job, prog = document.getElementById("retrain-progress"), s = document.getElementById("retrain-status");
    const act = document.getElementById("activate"), ev = document.getElementById("retrain-eval");
    act.classList.add("hidden");
    ev.textContent = "";
    if (!j) { s.textContent = ""; return false; }
    prog.value = j.progress || 0;
    s.className = "status" + (j.state === "failed" ? " error" : "");
    s.textContent = j.state === "running" ? j.stage + "…" : j.state === "failed" ? "Retraining failed: " + j.error :
      j.state === "done" ? "Done: a new model is ready (not active yet)." : "Activated as version " + j.version + ".";
    if (j.evaluation) {
      const e = j.evaluation;
      const t = LW.el("table", {}, LW.el("thead", {}, LW.el("tr", {}, LW.el("th", {scope: "col", text: "Model"}),
        LW.el("th", {scope: "col", class: "num", text: "Accuracy"}), LW.el("th", {scope: "col", class: "num", text: "Macro F1"}))));
      const tb = LW.el("tbody");
      for (const [name, sc] of [["current", e.current], ["new", e.candidate]]) {
        if (!sc) continue;
        tb.append(LW.el("tr", {}, LW.el("th", {scope: "row", text: name}), LW.el("td", {class: "num", text: (sc.accuracy * 100).toFixed(1) + " %"}),
          LW.el("td", {class: "num", text: sc.macro_f1.toFixed(3)})));
      }
      t.append(tb);
      ev.append(LW.el("p", {class: "muted", text: "Evaluated on " + e.test_rows + " held-out rows (" + e.note + ")."}), t);
    }
    if (j.state === "done" && session.user) act.classList.remove("hidden");
    return j.state === "running";
  }
  async function pollRetrain() {
    try {
      const st = await LW.getJSON("/ui/api/retrain");
      if (showModel(st)) setTimeout(pollRetrain, 400);
    } catch (e) { document.getElementById("retrain-status").textContent = e.message; }
  }

  // --- wiring ---
  async function init() {
    session = await LW.header();
    for (const k of Object.keys(metrics)) makeChart(k);
    const rb = [...document.querySelectorAll("[data-range]")];
    const pressRange = () => rb.forEach(b => b.setAttribute("aria-pressed", String(!zoom && Number(b.dataset.range) === range)));
    rb.forEach(b => b.addEventListener("click", () => { range = Number(b.dataset.range); zoom = null; document.getElementById("unzoom").classList.add("hidden"); pressRange(); load(); }));
    document.getElementById("unzoom").addEventListener("click", () => { zoom = null; document.getElementById("unzoom").classList.add("hidden"); pressRange(); load(); });
    pressRange();
    window.addEventListener("resize", () => { for (const m of Object.values(metrics)) m.u.setSize({width: width(), height: m.u.height}); drawBand(); });

    try {
      const d = await LW.getJSON("/ui/api/v1/devices/" + encodeURIComponent(id));
      updateNow(d); setState(d.state);
      document.getElementById("now-meta").textContent = "Firmware " + (d.firmware || "unknown") + " · last seen " + LW.ago(d.last_seen);
    } catch (e) { document.getElementById("now-meta").textContent = e.message; }
    if (has("relays")) { const rl = await LW.getJSON("/ui/api/relays"); setRelay(rl[id] && rl[id].state); }
    const evs = await LW.getJSON("/ui/api/v1/events?type=anomaly&limit=50&device=" + encodeURIComponent(id));
    for (const e of evs.reverse()) addEvent(e, false);

    if (session.user && has("commands")) {
      document.getElementById("controls").classList.remove("hidden");
      document.querySelectorAll("[data-cmd]").forEach(b => b.addEventListener("click", () => command(b.dataset.cmd, null, b)));
      document.getElementById("alarm-form").addEventListener("submit", ev => { ev.preventDefault(); command("set_alarm", {watts: Number(document.getElementById("alarm-w").value)}); });
      document.getElementById("maxp-form").addEventListener("submit", ev => { ev.preventDefault(); command("set_thresholds", {max_power_w: Number(document.getElementById("maxp-w").value)}); });
    }
    if (has("labels")) {
      document.getElementById("labelling").classList.remove("hidden");
      const lm = document.getElementById("label-mode");
      lm.disabled = !session.user;
      document.getElementById("retrain").disabled = !session.user;
      lm.addEventListener("click", () => { labelMode = !labelMode; lm.setAttribute("aria-pressed", String(labelMode)); });
      // Without a pointer: label exactly what the charts show (zoom first
      // with the range buttons).
      const ls = document.getElementById("label-shown");
      ls.disabled = !session.user;
      ls.addEventListener("click", () => { const x = metrics.power.u.scales.x; setLabelSpan(x.min, x.max); document.getElementById("label-name").focus(); });
      document.getElementById("label-form").addEventListener("submit", async ev => {
        ev.preventDefault();
        const st = document.getElementById("label-status");
        try {
          await LW.send("POST", "/ui/api/labels", {device: id, from: new Date(span.from * 1000).toISOString(), to: new Date(span.to * 1000).toISOString(), label: document.getElementById("label-name").value.trim()});
          st.className = "status ok"; st.textContent = "Label saved.";
          loadLabels();
        } catch (e) { st.className = "status error"; st.textContent = e.message; }
      });
      document.getElementById("retrain").addEventListener("click", async () => {
        try { await LW.send("POST", "/ui/api/retrain"); pollRetrain(); } catch (e) { document.getElementById("retrain-status").textContent = e.message; }
      });
      document.getElementById("activate").addEventListener("click", async () => {
        try { await LW.send("POST", "/ui/api/retrain/activate"); pollRetrain(); } catch (e) { document.getElementById("retrain-status").textContent = e.message; }
      });
      document.getElementById("rollback").addEventListener("click", async () => {
        try { await LW.send("POST", "/ui/api/retrain/rollback"); pollRetrain(); } catch (e) { document.getElementById("retrain-status").textContent = e.message; }
      });
      loadLabels(); pollRetrain();
    } else {
      document.querySelectorAll(".label-only").forEach(e => e.classList.add("hidden"));
    }
    await load();
    loadEnergy();
    setInterval(() => { if (!zoom && range > 3600) load(); }, 60000);
    setInterval(loadEnergy, 60000);
    LW.stream({device: id}, {
      reading: e => { onReading(e); setState("online"); },
      anomaly: e => { addEvent(e, true); events.push({t: Date.parse(e.ts) / 1000, kind: e.kind});
        const m = {relay_trip: "tripped", relay_latch: "latched", relay_reset: "closed", relay_recover: "closed"}[e.kind];
        if (m && e.source === "device") setRelay(m); },
      status: e => { setState(e.status === "offline" ? "offline" : "online"); if (e.relay) setRelay(e.relay); },
      ack: e => { if (e.ack && e.ack.ok && e.ack.state) setRelay(e.ack.state); },
    });
    document.body.dataset.ready = "1";
  }
  init().catch(e => { console.error(e); });
})();
