// pp dashboard: every text from a node or a job is put in with textContent,
// never parsed as HTML.
"use strict";
(function () {
  const MAX_TASKS = 10000;
  const WINDOW_S = 30;
  let tasks = [];
  let last = null;

  function el(tag, cls, text) {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined) e.textContent = String(text);
    return e;
  }
  function fmtInt(n) { return Number(n).toLocaleString("en-US"); }
  function fmtSecs(s) {
    if (s === null || s === undefined) return "–";
    if (s < 1) return (s * 1000).toFixed(0) + " ms";
    if (s < 120) return s.toFixed(1) + " s";
    return Math.floor(s / 60) + " min " + Math.round(s % 60) + " s";
  }
  function fmtBytes(b) {
    if (b === null || b === undefined) return "–";
    const units = ["B", "kB", "MB", "GB", "TB"];
    let i = 0;
    while (b >= 1000 && i < units.length - 1) { b /= 1000; i++; }
    return (i ? b.toFixed(1) : b) + " " + units[i];
  }
  function hue(name) {
    let h = 0;
    for (let i = 0; i < name.length; i++) h = (h * 31 + name.charCodeAt(i)) >>> 0;
    return h % 360;
  }
  function colour(name) { return "hsl(" + hue(name) + ", 70%, 60%)"; }

  function summary(s) {
    const box = document.getElementById("summary");
    box.replaceChildren();
    const t = s.totals;
    const items = [
      ["elapsed", fmtSecs(s.elapsed_s)], ["submitted", fmtInt(t.submitted)],
      ["succeeded", fmtInt(t.succeeded)], ["failed", fmtInt(t.failed)],
      ["active", fmtInt(t.active)], ["retried", fmtInt(t.retried)],
      ["ran", fmtInt(t.ran)], ["from journal", fmtInt(t.from_journal)],
      ["reclaimed", fmtInt(t.reclaimed)],
      ["mean queue wait", fmtSecs(t.queue_wait_s)],
      ["held for inputs", fmtInt(t.held)], ["kept here", fmtBytes(t.kept_bytes)],
    ];
    for (const [k, v] of items) {
      const d = el("div", "stat");
      d.append(el("b", null, v), el("span", null, k));
      box.append(d);
    }
  }

  function groups(s) {
    const box = document.getElementById("groups");
    box.replaceChildren();
    for (const g of s.groups) {
      const row = el("div", "group");
      row.dataset.group = g.name;
      const pct = g.total ? (100 * g.done / g.total) : 0;
      const track = el("div", "track");
      const bar = el("div", "bar");
      bar.setAttribute("role", "progressbar");
      bar.setAttribute("aria-valuemin", "0");
      bar.setAttribute("aria-valuemax", String(g.total));
      bar.setAttribute("aria-valuenow", String(g.done));
      bar.style.width = pct.toFixed(1) + "%";
      track.append(bar);
      const eta = g.done >= g.total && g.total > 0 ? "done" : "ETA " + fmtSecs(g.eta_s);
      row.append(el("div", "name", g.name), track,
                 el("div", "text", fmtInt(g.done) + " / " + fmtInt(g.total) + " · " + pct.toFixed(0) + "% · " + eta));
      box.append(row);
    }
  }

  function nodes(s) {
    const body = document.querySelector("#nodes tbody");
    body.replaceChildren();
    for (const n of s.nodes) {
      const tr = el("tr");
      tr.dataset.node = n.name;
      const state = el("td");
      state.append(el("span", "state " + n.state, n.state));
      if (n.reason) state.append(el("span", "reason", n.reason));
      const rtt = n.rtt_ms === null ? "–" : n.rtt_ms.toFixed(2) + " ms";
      const bytes = n.bytes_in === null ? "–" : fmtBytes(n.bytes_in) + " / " + fmtBytes(n.bytes_out);
      tr.append(el("td", "name", n.name), state, el("td", "offer", n.offer ?? "–"),
                el("td", "offer", n.in_use ?? "–"), el("td", "n", n.workers), el("td", "n", n.busy),
                el("td", "n", fmtInt(n.done)), el("td", "n", fmtInt(n.failed)), el("td", "n", fmtInt(n.rerun)),
                el("td", "n", fmtSecs(n.job_time_s)), el("td", "n", rtt), el("td", "n", bytes),
                el("td", "n", fmtInt(n.kept)), el("td", "n", fmtInt(n.chained)), el("td", "n", fmtInt(n.recomputed)),
                el("td", "n", fmtInt(n.transfers) + " / " + fmtBytes(n.transfer_bytes)), el("td", "n", fmtInt(n.fetched)));
      body.append(tr);
    }
  }

  function errors(s) {
    const body = document.querySelector("#errors tbody");
    body.replaceChildren();
    const list = s.errors.slice(-20).reverse();
    for (const e of list) {
      const tr = el("tr");
      tr.append(el("td", "n", e.at_s.toFixed(2) + " s"), el("td", null, e.job), el("td", null, e.node),
                el("td", null, e.kind), el("td", "msg", e.message));
      body.append(tr);
    }
    document.getElementById("noerrors").hidden = list.length > 0;
    document.querySelector("#errors thead").hidden = list.length === 0;
  }

  // Rows: for each place (local first), as many lanes as it has workers;
  // each task goes in the first lane free at its start.
  function stream(s) {
    const canvas = document.getElementById("stream");
    const ratio = window.devicePixelRatio || 1;
    const width = canvas.clientWidth || 1200;
    const places = s.nodes.map(n => ({ name: n.name, lanes: Math.max(1, n.workers) }));
    const rows = places.reduce((a, p) => a + p.lanes, 0);
    const rowH = Math.max(6, Math.min(22, Math.floor(360 / Math.max(1, rows))));
    const labelW = 150;
    const height = rows * rowH + 24;
    canvas.style.height = height + "px";
    canvas.width = width * ratio;
    canvas.height = height * ratio;
    const g = canvas.getContext("2d");
    g.scale(ratio, ratio);
    g.clearRect(0, 0, width, height);
    const end = s.elapsed_s;
    const start = Math.max(0, end - WINDOW_S);
    const span = Math.max(end - start, 0.001);
    document.getElementById("window").textContent = "last " + fmtSecs(span) + ", " + fmtInt(tasks.length) + " tasks kept";
    const x = t => labelW + (width - labelW - 8) * (t - start) / span;
    const byPlace = new Map();
    for (const t of tasks) {
      if (t.end_s < start) continue;
      if (!byPlace.has(t.node)) byPlace.set(t.node, []);
      byPlace.get(t.node).push(t);
    }
    g.font = "12px system-ui, sans-serif";
    g.textBaseline = "middle";
    // A tick every 1, 2, 5, 10 ... seconds, labelled in seconds since the start.
    const steps = [0.1, 0.2, 0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300, 600];
    const step = steps.find(st => span / st <= 10) || 600;
    g.fillStyle = "#8a9bb8";
    g.strokeStyle = "#1c2a45";
    for (let t = Math.ceil(start / step) * step; t <= end + 1e-9; t += step) {
      const px = Math.round(x(t)) + 0.5;
      g.beginPath(); g.moveTo(px, 0); g.lineTo(px, rows * rowH); g.stroke();
      g.fillText(t.toFixed(step < 1 ? 1 : 0) + " s", px - 10, height - 10);
    }
    let row = 0;
    g.font = "12px system-ui, sans-serif";
    g.textBaseline = "middle";
    const seen = new Map();
    for (const p of places) {
      g.fillStyle = "#8a9bb8";
      g.fillText(p.name, 6, row * rowH + Math.min(p.lanes * rowH, rowH) / 2 + 2, labelW - 12);
      g.strokeStyle = "#23314f";
      g.beginPath(); g.moveTo(0, row * rowH + 0.5); g.lineTo(width, row * rowH + 0.5); g.stroke();
      const list = (byPlace.get(p.name) || []).slice().sort((a, b) => a.start_s - b.start_s);
      const free = new Array(p.lanes).fill(-Infinity);
      for (const t of list) {
        let lane = free.findIndex(f => f <= t.start_s + 1e-6);
        if (lane < 0) lane = free.indexOf(Math.min(...free));
        free[lane] = t.end_s;
        const x0 = Math.max(labelW, x(t.start_s));
        const full = x(t.end_s) - x0;
        const w = Math.max(1, full > 3 ? full - 1 : full);
        const y = (row + lane) * rowH + 1;
        g.fillStyle = t.failed ? "#f87171" : colour(t.job);
        g.fillRect(x0, y, w, rowH - 2);
        if (t.failed) {
          g.strokeStyle = "#7f1d1d";
          g.strokeRect(x0 + 0.5, y + 0.5, Math.max(1, w - 1), rowH - 3);
        }
        seen.set(t.job, true);
      }
      row += p.lanes;
    }
    const legend = document.getElementById("legend");
    legend.replaceChildren();
    for (const name of seen.keys()) {
      const item = el("span");
      const sw = el("i");
      sw.style.background = colour(name);
      item.append(sw, document.createTextNode(name));
      legend.append(item);
    }
    if (s.totals.failed > 0) {
      const item = el("span");
      const sw = el("i");
      sw.style.background = "#f87171";
      item.append(sw, document.createTextNode("failed"));
      legend.append(item);
    }
  }

  function render(s) {
    last = s;
    summary(s); groups(s); nodes(s); errors(s); stream(s);
  }

  function receive(s) {
    if (s.full) tasks = s.tasks; else tasks = tasks.concat(s.tasks);
    if (tasks.length > MAX_TASKS) tasks = tasks.slice(tasks.length - MAX_TASKS);
    render(s);
  }

  function connect() {
    const live = document.getElementById("live");
    const events = new EventSource("/events");
    events.onopen = () => { live.textContent = "live"; live.className = "live"; };
    events.onmessage = m => {
      try { receive(JSON.parse(m.data)); } catch (e) { console.error(e); }
    };
    events.onerror = () => { live.textContent = "disconnected"; live.className = "live off"; };
  }
  window.addEventListener("resize", () => { if (last) stream(last); });
  connect();
})();
