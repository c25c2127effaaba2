-- The dashboard page `mw run` serves at /: one self-contained HTML page (no file or font is
-- fetched from anywhere) that draws the stack's dependency graph from /api/status, polled every
-- 2 s, and follows /api/events live. Component names and messages reach the page as text only.
local M = {}

M.html = [==[<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>mw</title>
<style>
  :root {
    --bg: #f6f7f9; --panel: #fff; --ink: #1d2330; --muted: #6b7280; --line: #d6dae1;
    --ok: #1f9d55; --wait: #c9a100; --back: #e07b00; --bad: #d64545; --off: #9aa1ab;
  }
  * { box-sizing: border-box; }
  body { margin: 0; font: 13px/1.4 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif;
         background: var(--bg); color: var(--ink); }
  header { display: flex; flex-wrap: wrap; gap: 8px 18px; align-items: center; padding: 10px 16px;
           background: var(--panel); border-bottom: 1px solid var(--line); position: sticky; top: 0; z-index: 2; }
  header h1 { font-size: 16px; margin: 0; }
  header .meta { color: var(--muted); }
  #live { padding: 1px 8px; border-radius: 10px; background: var(--off); color: #fff; }
  #live.on { background: var(--ok); }
  #summary span { margin-right: 10px; white-space: nowrap; }
  #summary i { display: inline-block; width: 9px; height: 9px; border-radius: 50%; margin-right: 4px; }
  input[type=search] { padding: 4px 8px; border: 1px solid var(--line); border-radius: 4px; min-width: 160px; }
  button { padding: 4px 10px; border: 1px solid var(--line); border-radius: 4px; background: #fff; cursor: pointer; }
  #reloadmsg { color: var(--muted); max-width: 40em; overflow: hidden; text-overflow: ellipsis; white-space: nowrap; }
  main { display: grid; grid-template-columns: minmax(0, 1fr) 380px; gap: 12px; padding: 12px; }
  @media (max-width: 900px) { main { grid-template-columns: 1fr; } }
  section { background: var(--panel); border: 1px solid var(--line); border-radius: 6px; min-width: 0; }
  section h2 { font-size: 13px; margin: 0; padding: 8px 12px; border-bottom: 1px solid var(--line); }
  #graphwrap { overflow: auto; max-height: calc(100vh - 120px); }
  #graph { position: relative; }
  #edges { position: absolute; left: 0; top: 0; pointer-events: none; }
  #edges path { fill: none; stroke: #b7bec9; stroke-width: 1.4; }
  #edges path.started { stroke-dasharray: 4 3; }
  #edges path.completed { stroke-dasharray: 1 3; stroke-linecap: round; }
  #edges path.hot { stroke: #2563eb; stroke-width: 2.2; }
  .box { position: absolute; padding: 5px 8px 4px 12px; border: 1px solid var(--line);
         border-radius: 6px; background: #fff; overflow: hidden; cursor: default; }
  .box::before { content: ""; position: absolute; left: 0; top: 0; bottom: 0; width: 5px;
                 background: var(--c, var(--off)); }
  .box.dim { opacity: .25; }
  .box.flash { animation: flash 1s; }
  @keyframes flash { from { box-shadow: 0 0 0 4px var(--c); } to { box-shadow: none; } }
  .box .top { display: flex; justify-content: space-between; gap: 6px; }
  .box .name { font-weight: 600; overflow: hidden; text-overflow: ellipsis; white-space: nowrap; }
  .box .state { color: var(--c, var(--off)); font-weight: 600; white-space: nowrap; }
  .box .info, .box .fail { color: var(--muted); font-size: 11px; white-space: nowrap; overflow: hidden;
                           text-overflow: ellipsis; }
  .box .fail.some { color: var(--bad); }
  .box .spark { display: flex; align-items: center; gap: 6px; font-size: 11px; color: var(--muted);
                white-space: nowrap; }
  .box .spark.none svg { display: none; }
  .box svg { width: 110px; height: 16px; }
  .compact .box { padding: 3px 6px 2px 10px; font-size: 12px; line-height: 1.3; }
  .compact .box svg { width: 90px; height: 13px; }
  .box svg polyline { fill: none; stroke: #2563eb; stroke-width: 1; vector-effect: non-scaling-stroke; }
  .s-healthy, .s-running, .s-completed { --c: var(--ok); }
  .s-starting, .s-waiting, .s-pending, .s-restarting { --c: var(--wait); }
  .s-backoff { --c: var(--back); }
  .s-unhealthy, .s-gave_up { --c: var(--bad); }
  .s-stopped, .s-user_stopped, .s-gone { --c: var(--off); }
  .box .again { padding: 0 5px; font-size: 11px; line-height: 1.4; margin-left: 4px; }
  #log { list-style: none; margin: 0; padding: 0; max-height: calc(100vh - 120px); overflow: auto;
         font: 12px/1.35 ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; }
  #log li { padding: 3px 10px; border-bottom: 1px solid #eef0f3; word-break: break-word; }
  #log .t { color: var(--muted); margin-right: 6px; }
  #log .c { font-weight: 600; margin-right: 4px; }
  #log .warn { background: #fff8e6; }
  #log .error { background: #fdecec; }
  #empty { padding: 16px; color: var(--muted); }
</style>
</head>
<body>
<header>
  <h1 id="title">mw</h1>
  <span class="meta" id="meta"></span>
  <span id="live">connecting</span>
  <span id="summary"></span>
  <input type="search" id="filter" placeholder="filter components" aria-label="filter components">
  <button id="reload" type="button" title="reload the stack file, as on SIGHUP">Reload</button>
  <span id="reloadmsg"></span>
</header>
<main>
  <section>
    <h2>Components <span class="meta" id="legend">(left: dependencies; solid edge: waits for healthy,
      dashed: for started, dotted: for a job to complete)</span></h2>
    <div id="graphwrap"><div id="graph"><svg id="edges"></svg></div><div id="empty">waiting for mw…</div></div>
  </section>
  <section>
    <h2>Events</h2>
    <ul id="log"></ul>
  </section>
</main>
<script type="application/json" id="boot"><!--BOOT--></script>
<script>
"use strict";
(function () {
  const SVGNS = "http://www.w3.org/2000/svg";
  // a big stack gets smaller boxes, so that 50 components fit a screen without much scrolling
  const ROOMY = { w: 210, h: 80, colGap: 60, rowGap: 12 }, COMPACT = { w: 172, h: 66, colGap: 34, rowGap: 7 };
  const PAD = 14;
  let dims = ROOMY;
  const SPARK = 60, LOG_MAX = 300, POLL_MS = 2000;
  const STATE_COLOR = { healthy: "#1f9d55", running: "#1f9d55", starting: "#c9a100", waiting: "#c9a100",
    pending: "#c9a100", restarting: "#c9a100", backoff: "#e07b00", unhealthy: "#d64545", gave_up: "#d64545",
    stopped: "#9aa1ab", user_stopped: "#9aa1ab", gone: "#9aa1ab", completed: "#1f9d55" };
  const $ = (id) => document.getElementById(id);
  const graph = $("graph"), edges = $("edges"), logEl = $("log");
  const boxes = new Map();      // name -> { el, parts, row, spark: [], lastLatency }
  let shapeKey = "";
  let rows = [];

  function el(tag, cls, text) {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined) e.textContent = text;
    return e;
  }
  function dur(s) {
    if (typeof s !== "number" || !isFinite(s)) return "-";
    if (s < 1) return Math.round(s * 1000) + "ms";
    if (s < 60) return s.toFixed(1) + "s";
    if (s < 3600) return Math.floor(s / 60) + "m" + String(Math.floor(s % 60)).padStart(2, "0") + "s";
    if (s < 86400) return Math.floor(s / 3600) + "h" + String(Math.floor(s % 3600 / 60)).padStart(2, "0") + "m";
    return Math.floor(s / 86400) + "d" + Math.floor(s % 86400 / 3600) + "h";
  }
  function clock(t) {
    const d = new Date(t * 1000);
    return d.toTimeString().slice(0, 8) + "." + String(d.getMilliseconds()).padStart(3, "0");
  }
  function stateText(r) {
    if (r.state === "backoff" && typeof r.retry_at === "number") {
      const left = r.retry_at - Date.now() / 1000;
      return "backoff " + (left > 0 ? dur(left) : "now");
    }
    if (r.state === "user_stopped") return "stopped by user";
    return (r.state || "?").replace("_", " ");
  }
  function failText(f) {
    if (!f || typeof f !== "object") return "no failures";
    let what = f.message || f.reason || "failed";
    if (typeof f.time === "number") what += ", " + dur(Date.now() / 1000 - f.time) + " ago";
    return "last: " + what;
  }

  // Columns by dependency depth; a column taller than the window wraps into more columns.
  function layout(list) {
    const byName = new Map(list.map((r) => [r.name, r]));
    const depth = new Map();
    function depthOf(n, path) {
      if (depth.has(n)) return depth.get(n);
      if (path.has(n)) return 0;
      path.add(n);
      let d = 0;
      for (const dep of Object.keys(byName.get(n).depends_on || {})) {
        if (byName.has(dep)) d = Math.max(d, depthOf(dep, path) + 1);
      }
      path.delete(n);
      depth.set(n, d);
      return d;
    }
    list.forEach((r) => depthOf(r.name, new Set()));
    const levels = [];
    list.forEach((r) => { const d = depth.get(r.name); (levels[d] = levels[d] || []).push(r.name); });
    // a level wraps into more columns only when it is much taller than the window
    const maxRows = Math.max(15, Math.floor((window.innerHeight - 170) / (dims.h + dims.rowGap)));
    const pos = new Map();
    let col = 0, width = 0, height = 0;
    levels.forEach((names) => {
      if (!names) return;
      // order by where the dependencies sit, so edges cross less
      const key = (n) => {
        const deps = Object.keys(byName.get(n).depends_on || {}).filter((d) => pos.has(d));
        if (!deps.length) return Infinity;
        return deps.reduce((a, d) => a + pos.get(d).y + pos.get(d).col * 1e4, 0) / deps.length;
      };
      const order = names.map((n, i) => [n, key(n), i]).sort((a, b) => (a[1] - b[1]) || (a[2] - b[2])).map((x) => x[0]);
      order.forEach((n, i) => {
        const c = col + Math.floor(i / maxRows), r = i % maxRows;
        const p = { x: PAD + c * (dims.w + dims.colGap), y: PAD + r * (dims.h + dims.rowGap), col: c };
        pos.set(n, p);
        width = Math.max(width, p.x + dims.w + PAD);
        height = Math.max(height, p.y + dims.h + PAD);
      });
      col += Math.ceil(order.length / maxRows);
    });
    return { pos, width, height };
  }

  function build(list) {
    for (const b of boxes.values()) b.el.remove();
    const old = boxes;
    const keep = new Map();
    dims = list.length > 20 ? COMPACT : ROOMY;
    graph.classList.toggle("compact", dims === COMPACT);
    const { pos, width, height } = layout(list);
    graph.style.width = width + "px";
    graph.style.height = height + "px";
    edges.setAttribute("width", width);
    edges.setAttribute("height", height);
    edges.textContent = "";
    list.forEach((r) => {
      const p = pos.get(r.name);
      const e = el("div", "box");
      e.dataset.component = r.name;
      e.style.left = p.x + "px";
      e.style.top = p.y + "px";
      e.style.width = dims.w + "px";
      e.style.height = dims.h + "px";
      const top = el("div", "top");
      const name = el("span", "name", r.name);
      name.title = r.name;
      const state = el("span", "state");
      // as `mw restart`: a graceful restart, and a component that gave up starts afresh
      const again = el("button", "again", "\u21bb");
      again.type = "button";
      again.title = "restart " + (r.component || r.name) + " (a given-up component starts afresh)";
      again.addEventListener("click", () => restart(r.component || r.name));
      const right = el("span");
      right.append(state, again);
      top.append(name, right);
      const info = el("div", "info");
      const fail = el("div", "fail");
      const spark = el("div", "spark");
      const svg = document.createElementNS(SVGNS, "svg");
      svg.setAttribute("viewBox", "0 0 " + (SPARK - 1) + " 20");
      svg.setAttribute("preserveAspectRatio", "none");
      const line = document.createElementNS(SVGNS, "polyline");
      svg.appendChild(line);
      const hb = el("span", "hb");
      spark.append(svg, hb);
      e.append(top, info, fail, spark);
      e.addEventListener("mouseenter", () => hot(r.name, true));
      e.addEventListener("mouseleave", () => hot(r.name, false));
      graph.appendChild(e);
      const prev = old.get(r.name);
      keep.set(r.name, { el: e, parts: { state, info, fail, line, hb }, spark: prev ? prev.spark : [],
                         lastLatency: prev ? prev.lastLatency : undefined });
    });
    list.forEach((r) => {
      const to = pos.get(r.name);
      for (const [dep, cond] of Object.entries(r.depends_on || {})) {
        const from = pos.get(dep);
        if (!from) continue;
        const x1 = from.x + dims.w, y1 = from.y + dims.h / 2, x2 = to.x, y2 = to.y + dims.h / 2;
        const mid = (x1 + x2) / 2;
        const path = document.createElementNS(SVGNS, "path");
        path.setAttribute("d", `M${x1},${y1} C${mid},${y1} ${mid},${y2} ${x2},${y2}`);
        path.setAttribute("class", cond === "healthy" || cond === "completed" ? cond : "started");
        path.dataset.from = dep;
        path.dataset.to = r.name;
        edges.appendChild(path);
      }
    });
    boxes.clear();
    keep.forEach((v, k) => boxes.set(k, v));
    applyFilter();
  }

  function hot(name, on) {
    for (const p of edges.children) {
      if (p.dataset.from === name || p.dataset.to === name) p.classList.toggle("hot", on);
    }
  }

  function setState(b, state, text) {
    const cls = "s-" + state;
    if (!b.el.classList.contains(cls)) {
      const was = b.el.dataset.state;
      b.el.className = b.el.className.split(" ").filter((c) => !c.startsWith("s-")).join(" ") + " " + cls;
      if (was && was !== state) {
        b.el.classList.remove("flash");
        void b.el.offsetWidth;
        b.el.classList.add("flash");
      }
    }
    b.el.dataset.state = state;
    b.parts.state.textContent = text;
  }

  function update(r) {
    const b = boxes.get(r.name);
    if (!b) return;
    setState(b, r.state, stateText(r));
    const bits = ["restarts " + (r.restarts || 0)];
    if (typeof r.uptime === "number") bits.push("up " + dur(r.uptime));
    if (r.next_action) bits.push("next: " + r.next_action.replace("_", " "));
    if (r.container) bits.push(String(r.container).slice(0, 12));
    b.parts.info.textContent = bits.join(" · ");
    b.parts.fail.textContent = failText(r.last_failure);
    b.parts.fail.className = "fail" + (r.last_failure ? " some" : "");
    b.parts.fail.title = b.parts.fail.textContent;
    if (typeof r.heartbeat_latency === "number" && r.heartbeat_latency !== b.lastLatency) {
      b.lastLatency = r.heartbeat_latency;
      b.spark.push(r.heartbeat_latency * 1000);
      if (b.spark.length > SPARK) b.spark.shift();
    }
    drawSpark(b, r);
  }

  function drawSpark(b, r) {
    const s = b.spark;
    b.parts.hb.parentNode.classList.toggle("none", !r.heartbeat);
    if (!r.heartbeat) { b.parts.hb.textContent = "no heartbeat"; b.parts.line.setAttribute("points", ""); return; }
    const max = Math.max(1, ...s);
    const off = SPARK - s.length;
    b.parts.line.setAttribute("points", s.map((v, i) => (off + i) + "," + (19 - (v / max) * 18).toFixed(2)).join(" "));
    const last = s[s.length - 1];
    b.parts.hb.textContent = s.length ? "hb " + (last < 10 ? last.toFixed(1) : Math.round(last)) + "ms" : "hb -";
    b.parts.hb.title = r.heartbeat + " heartbeat, max " + max.toFixed(1) + "ms over the last " + s.length + " samples";
  }

  function summary(list) {
    const counts = {};
    list.forEach((r) => { counts[r.state] = (counts[r.state] || 0) + 1; });
    const s = $("summary");
    s.textContent = "";
    Object.keys(counts).sort().forEach((k) => {
      const span = el("span");
      const dot = el("i");
      dot.style.background = STATE_COLOR[k] || "#9aa1ab";
      span.append(dot, document.createTextNode(counts[k] + " " + k.replace("_", " ")));
      s.appendChild(span);
    });
  }

  function render(doc) {
    rows = Array.isArray(doc.components) ? doc.components : [];
    $("title").textContent = "mw · " + (doc.stack || "?");
    document.title = "mw · " + (doc.stack || "?");
    const since = typeof doc.since === "number" ? " · since " + new Date(doc.since * 1000).toLocaleString() : "";
    $("meta").textContent = "pid " + doc.pid + since;
    $("empty").style.display = rows.length ? "none" : "";
    const key = JSON.stringify(rows.map((r) => [r.name, r.depends_on])) + "|" + window.innerHeight;
    if (key !== shapeKey) { shapeKey = key; build(rows); }
    rows.forEach(update);
    summary(rows);
  }

  function applyFilter() {
    const q = $("filter").value.trim().toLowerCase();
    for (const [name, b] of boxes) b.el.classList.toggle("dim", q !== "" && !name.toLowerCase().includes(q));
  }
  $("filter").addEventListener("input", applyFilter);

  async function poll() {
    try {
      const res = await fetch("/api/status", { cache: "no-store" });
      if (!res.ok) throw new Error("HTTP " + res.status);
      render(await res.json());
    } catch (e) {
      $("live").textContent = "no answer";
      $("live").className = "";
    }
  }

  function logLine(ev) {
    const li = el("li", ev.level || "info");
    li.append(el("span", "t", clock(ev.time || Date.now() / 1000)));
    if (ev.component) li.append(el("span", "c", ev.component));
    let text = ev.msg || ev.event || "";
    if (ev.reason && !String(text).includes(ev.reason)) text += " (" + ev.reason + ")";
    li.append(document.createTextNode(text));
    li.title = ev.event || "";
    logEl.insertBefore(li, logEl.firstChild);
    while (logEl.childElementCount > LOG_MAX) logEl.lastChild.remove();
  }

  function events(after) {
    const es = new EventSource(after ? "/api/events?after=" + after : "/api/events?backlog=100");
    es.onopen = () => { $("live").textContent = "live"; $("live").className = "on"; };
    es.onerror = () => { $("live").textContent = "reconnecting"; $("live").className = ""; };
    es.onmessage = (m) => {
      let ev;
      try { ev = JSON.parse(m.data); } catch (e) { return; }
      logLine(ev);
      if (ev.event === "state" && ev.component && boxes.has(ev.component)) {
        const r = rows.find((x) => x.name === ev.component);
        if (r) { r.state = ev.state; update(r); summary(rows); }
      }
    };
  }

  async function restart(name) {
    $("reloadmsg").textContent = "restarting " + name + "…";
    try {
      const res = await fetch("/api/restart?components=" + encodeURIComponent(name), { method: "POST" });
      const v = await res.json();
      $("reloadmsg").textContent = v.ok ? ("restarted " + name) : ("restart failed: " + v.error);
    } catch (e) {
      $("reloadmsg").textContent = "restart failed: " + e.message;
    }
    poll();
  }

  $("reload").addEventListener("click", async () => {
    $("reloadmsg").textContent = "reloading…";
    try {
      const res = await fetch("/api/reload", { method: "POST" });
      const v = await res.json();
      $("reloadmsg").textContent = v.ok ? (v.message || "reloaded") : ("failed: " + v.error);
      $("reloadmsg").title = $("reloadmsg").textContent;
    } catch (e) {
      $("reloadmsg").textContent = "failed: " + e.message;
    }
    poll();
  });

  window.addEventListener("resize", () => { shapeKey = ""; poll(); });
  // the server put the status and the recent events in the page: draw them before anything loads
  let boot = null;
  try { boot = JSON.parse($("boot").textContent); } catch (e) { boot = null; }
  let after = 0;
  if (boot && boot.status) {
    render(boot.status);
    // the latencies mw saw before this page opened
    for (const [name, list] of Object.entries(boot.latency || {})) {
      const b = boxes.get(name);
      if (!b || !Array.isArray(list)) continue;
      b.spark = list.slice(-SPARK).map((v) => v * 1000);
      b.lastLatency = list[list.length - 1];
      const r = rows.find((x) => x.name === name);
      if (r) drawSpark(b, r);
    }
  } else {
    poll();
  }
  if (boot && Array.isArray(boot.events)) {
    boot.events.forEach((ev) => { logLine(ev); after = Math.max(after, ev.id || 0); });
  }
  setInterval(poll, POLL_MS);
  events(after);
})();
</script>
</body>
</html>
]==]

return M
