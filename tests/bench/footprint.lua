-- Benchmark 4, footprint: mw's RSS, private dirty memory and CPU while it supervises N busybox
-- httpd components with 1 s HTTP heartbeats, over a steady-state window; and the Engine API
-- calls it makes, counted by a forwarder on a unix socket between mw and the engine. Run for
-- each heartbeat path side by side: "published" (each heartbeat port published on 127.0.0.1,
-- so the engine runs a docker-proxy per component and every probe crosses it) and "netns"
-- (probes made inside each container's network namespace: nothing published). The memory for
-- supervision is mw's private dirty memory plus that of every docker-proxy the heartbeats caused.
local core = require "mw.core"
local net = require "mw.net"
local B = require "benchlib"
local P = require "proxy"
local E = B.E

local SIZES = B.list_knob("BENCH_FOOT_SIZES", { 1, 10, 50, 100 })
-- BENCH_FOOT_PATHS: the heartbeat paths measured (netns only where mw may enter namespaces)
local PATHS = B.list_knob("BENCH_FOOT_PATHS", { "published", "netns" })
local WINDOW = B.knob("BENCH_FOOT_SECS", 60)
local SETTLE = B.knob("BENCH_FOOT_SETTLE", 5)
local HB = '{ interval = "1s", timeout = "1s", misses = 3, grace = "30s" }'

-- Least-squares slope of ys over xs.
local function slope(xs, ys)
  local n = #xs
  if n < 2 then return nil end
  local sx, sy, sxx, sxy = 0, 0, 0, 0
  for i = 1, n do
    sx, sy = sx + xs[i], sy + ys[i]
    sxx, sxy = sxx + xs[i] * xs[i], sxy + xs[i] * ys[i]
  end
  local d = n * sxx - sx * sx
  if d == 0 then return nil end
  return (n * sxy - sx * sy) / d
end

local function mb(kb) return string.format("%.2f MB", kb / 1024) end

-- An idle mw process (binary, Lua state, libcurl, one engine connection): the floor.
local function baseline()
  local dir = E.tmpdir()
  local f = dir .. "/idle.lua"
  assert(B.fs.write_atomic(f, 'local core = require "mw.core"\nlocal docker = require "mw.docker"\n'
    .. 'assert(docker.connect())\ncore.sleep(4)\n', 420))
  local h = B.mw { "script", f }
  core.sleep(2)
  local s0 = B.sample(h.pid)
  core.sleep(1.5)
  local s1 = B.sample(h.pid)
  h.stop("KILL")
  return s1, (s1.cpu - s0.cpu) / (s1.t - s0.t)
end

-- The docker-proxy processes forwarding to the containers of a stack's heartbeat port (8089):
-- found by the container addresses in their command lines -> { pid... }
local function heartbeat_proxies(stack)
  local ips = {}
  for _, c in ipairs(E.engine():list { label = { "used-by=millwright", "mw.stack=" .. stack } } or {}) do
    for _, nw in pairs(c.NetworkSettings and c.NetworkSettings.Networks or {}) do
      if nw.IPAddress and nw.IPAddress ~= "" then ips[nw.IPAddress] = true end
    end
  end
  local found = {}
  for _, name in ipairs(B.fs.list("/proc") or {}) do
    if name:match("^%d+$") then
      local cmd = B.read("/proc/" .. name .. "/cmdline")
      if cmd and cmd:find("docker-proxy", 1, true) then
        local args = cmd:gsub("\0", " ") .. " "
        local ip = args:match("%-container%-ip (%S+) ")
        if ip and ips[ip] and args:find("-container-port 8089 ", 1, true) then found[#found + 1] = tonumber(name) end
      end
    end
  end
  return found
end

local function one(n, proxy, sock, path)
  local src = B.stack_source(n, { heartbeat = HB })
  local file, name, dir = E.stack("foot" .. path:sub(1, 3) .. n, src)
  local h = B.mw({ "run", "--log-format", "json", "--state-dir", dir .. "/state", file },
    { docker_host = "unix://" .. sock, env = { "MW_HEARTBEAT_PATH=" .. path } })
  local r = { n = n, path = path }
  local ok, err = pcall(function()
    local before = proxy.snapshot()
    local t_up = core.now()
    h.wait_all("healthy", B.names(n), 600)
    r.up = core.now() - t_up
    core.sleep(SETTLE)
    local mid = proxy.snapshot()
    r.bringup_calls = mid.count - before.count
    h.poll()
    local mark = #h.evs
    local s0 = B.sample(h.pid)
    local c0 = proxy.snapshot()
    local peak = s0.rss
    local deadline = core.now() + WINDOW
    while core.now() < deadline do
      core.sleep(math.min(5, deadline - core.now()))
      local s = B.sample(h.pid)
      if s and s.rss > peak then peak = s.rss end
    end
    local s1 = B.sample(h.pid)
    local c1 = proxy.snapshot()
    r.rss, r.pd, r.hwm, r.peak = s1.rss, s1.pd, s1.hwm, peak
    -- the docker-proxies the heartbeats caused, and what they hold
    r.proxies, r.proxy_pd, r.proxy_rss = 0, 0, 0
    for _, pid in ipairs(heartbeat_proxies(name)) do
      local ps = B.sample(pid)
      if ps then r.proxies, r.proxy_pd, r.proxy_rss = r.proxies + 1, r.proxy_pd + ps.pd, r.proxy_rss + ps.rss end
    end
    r.supervision = r.pd + r.proxy_pd
    -- which path the heartbeats took, as mw says in its log (a fallback says why)
    h.poll()
    r.via = path
    for i = 1, #h.evs do
      if h.evs[i].event == "heartbeat_via" then r.via = "published (" .. tostring(h.evs[i].reason) .. ")" break end
    end
    r.cpu = (s1.cpu - s0.cpu) / (s1.t - s0.t)
    local calls, kinds = P.diff(c0, c1)
    r.calls_min = calls / (s1.t - s0.t) * 60
    r.kinds = kinds
    r.failures, r.why = h.failures(mark)
    -- what mw logged in the window (an API call in the steady state should have a reason here)
    h.poll()
    local by = {}
    for i = mark + 1, #h.evs do
      local ev = h.evs[i].event or "?"
      by[ev] = (by[ev] or 0) + 1
    end
    local list = {}
    for ev, k in pairs(by) do list[#list + 1] = ev .. " ×" .. k end
    table.sort(list)
    r.events = table.concat(list, ", ")
    r.up_failures = h.failures(0) - r.failures
  end)
  h.stop()
  B.remove_stack(name)
  if not ok then error(err, 0) end
  print(string.format("  %s N=%d: up in %.1f s; RSS %s, private dirty %s, CPU %.2f%%, %.1f API calls/min (%s), %d failures; "
    .. "%d heartbeat docker-proxies (private dirty %s, RSS %s); logged in the window: %s",
    path, n, r.up, mb(r.rss), mb(r.pd), r.cpu * 100, r.calls_min, r.kinds ~= "" and r.kinds or "none", r.failures,
    r.proxies, mb(r.proxy_pd), mb(r.proxy_rss), r.events ~= "" and r.events or "nothing"))
  return r
end

-- One path's table (every size) and the growth per component.
local function path_report(path, results, idle, idle_cpu)
  local rows = {}
  rows[#rows + 1] = { "idle mw (script: engine connected, sleeping)", mb(idle.rss), mb(idle.pd),
    string.format("%.2f %%", idle_cpu * 100), "n/a", "", "", "", "" }
  local xs, rss, pd, cpu, calls = {}, {}, {}, {}, {}
  for _, r in ipairs(results) do
    rows[#rows + 1] = { string.format("N=%d", r.n), mb(r.rss) .. " (peak " .. mb(r.peak) .. ")", mb(r.pd),
      string.format("%.2f %%", r.cpu * 100), string.format("%.1f", r.calls_min),
      tostring(r.bringup_calls), tostring(r.failures),
      string.format("%d: %s private dirty (%s RSS)", r.proxies, mb(r.proxy_pd), mb(r.proxy_rss)), mb(r.supervision) }
    xs[#xs + 1], rss[#rss + 1], pd[#pd + 1], cpu[#cpu + 1], calls[#calls + 1] = r.n, r.rss, r.pd, r.cpu, r.calls_min
  end
  local srss, spd, scpu, scalls = slope(xs, rss), slope(xs, pd), slope(xs, cpu), slope(xs, calls)
  rows[#rows + 1] = { "growth per component (least squares)", srss and string.format("%.1f kB", srss) or "n/a",
    spd and string.format("%.1f kB", spd) or "n/a", scpu and string.format("%.4f %%", scpu * 100) or "n/a",
    scalls and string.format("%.2f", scalls) or "n/a", "", "", "", "" }
  local notes = {
    string.format("heartbeat path: %s; steady state: %d s window starting %d s after every component was healthy; heartbeats every 1 s",
      path, WINDOW, SETTLE),
    "RSS = VmRSS, private dirty = Private_Dirty of /proc/PID/smaps_rollup, CPU = utime+stime over the window / wall time",
    "API calls: requests counted by a forwarder on a unix socket (DOCKER_HOST=unix://...) between mw and /var/run/docker.sock",
    "heartbeat docker-proxies: the engine's docker-proxy processes forwarding to a container of the stack on port 8089; "
      .. "supervision memory = mw's private dirty + theirs",
  }
  for _, r in ipairs(results) do
    notes[#notes + 1] = string.format("N=%d: path %s; steady-state calls: %s; brought up in %.1f s%s%s", r.n, r.via,
      r.kinds ~= "" and r.kinds or "none", r.up,
      r.up_failures > 0 and string.format(" with %d failures on the way", r.up_failures) or "",
      r.failures > 0 and ("; failures in the window: " .. table.concat(r.why, " / ")) or "")
  end
  B.report("Footprint while supervising, heartbeats " .. path .. " (4)", {
    "components", "RSS", "private dirty", "CPU (one core)", "API calls/min (steady)", "API calls to bring up", "failures in window",
    "heartbeat docker-proxies", "memory for supervision",
  }, rows, notes)
  return scalls
end

return B.main(function()
  B.machine()
  E.image()
  local sock = string.format("/tmp/mw-bench-%s.sock", E.run_id)
  local proxy = P.start(sock)
  local idle, idle_cpu = baseline()
  local paths = {}
  for _, path in ipairs(PATHS) do
    if path ~= "netns" or net.can_setns() then paths[#paths + 1] = path
    else print("  netns path skipped: mw may not enter network namespaces here (needs root or CAP_SYS_ADMIN)") end
  end
  local by = {}
  local ok, err = pcall(function()
    for _, path in ipairs(paths) do
      by[path] = {}
      for _, n in ipairs(SIZES) do table.insert(by[path], one(n, proxy, sock, path)) end
    end
  end)
  proxy.stop()
  if not ok then error(err, 0) end

  local growth = {}
  for _, path in ipairs(paths) do growth[path] = path_report(path, by[path], idle, idle_cpu) end

  -- the targets at the largest N, each path side by side (issue 17: mw <= 1 % of a core;
  -- supervision memory <= 12 MB, against ~8 MB + ~70 MB of docker-proxies on the published path)
  local rows = {}
  for _, path in ipairs(paths) do
    local last = by[path][#by[path]]
    if last then
      local scalls = growth[path]
      rows[#rows + 1] = { path, "CPU of mw", "1 % of one core", string.format("%.2f %%", last.cpu * 100),
        B.ratio(last.cpu, 0.01), B.met(last.cpu <= 0.01) }
      rows[#rows + 1] = { path, "memory for supervision (mw private dirty + heartbeat docker-proxies)", "12 MB",
        string.format("%s (%s + %d proxies %s)", mb(last.supervision), mb(last.pd), last.proxies, mb(last.proxy_pd)),
        B.ratio(last.supervision, 12288), B.met(last.supervision <= 12288) }
      -- the issue sets no target for these two: shown for comparison, judged against nothing
      rows[#rows + 1] = { path, "mw private dirty alone (for comparison)", "none set", mb(last.pd), "", "" }
      rows[#rows + 1] = { path, "RSS of mw (for comparison; mostly shared libraries)", "none set", mb(last.rss), "", "" }
      -- steady calls do not grow with N when their slope over the sizes is ~0, or when there
      -- are none at the largest N (one size measured gives no slope: 0 calls still meets it)
      local flat = (scalls ~= nil and math.abs(scalls) < 0.05) or last.calls_min < 0.05
      rows[#rows + 1] = { path, "API calls/min, steady", "not growing with N", string.format("%.1f", last.calls_min),
        "", B.met(flat) }
    end
  end
  local n = SIZES[#SIZES]
  B.report("Footprint targets at N=" .. tostring(n) .. ", both heartbeat paths (4)",
    { "path", "measure", "target", "measured", "measured/target", "met" }, rows,
    { "the footprint note (shared/notes/footprint.md): the memory target is about private dirty memory; RSS counts libcurl's shared libraries",
      "netns: probes to 127.0.0.1 inside each container's network namespace, nothing published; published: MW_HEARTBEAT_PATH=published" })
end)
