-- Benchmark 7, heartbeat scale without containers: 1000 HTTP endpoints served by a Lua test
-- server on 127.0.0.1 (hbserver.lua, its own process), heartbeated every 100 ms by mw's
-- supervisor code (hbdriver.lua "mw": Sup:start_heartbeat on fake components) and, as the
-- anchor, by a bare loop of http.request in tasks (hbdriver.lua "loop"). Each driver measures
-- its own CPU and memory over the window; the server's CPU is sampled from here.
local core = require "mw.core"
local proc = require "mw.proc"
local B = require "benchlib"
local E = B.E
local run = require "run"

local N = B.knob("BENCH_HB_N", 1000)
local INTERVAL = B.knob("BENCH_HB_INTERVAL", 0.1)
local WARM = B.knob("BENCH_HB_WARM", 5)
local WINDOW = B.knob("BENCH_HB_SECS", 30)

local function spawn(args, out)
  local argv = { B.MW_BIN, "script" }
  for _, a in ipairs(args) do argv[#argv + 1] = a end
  local p = assert(proc.spawn { args = argv, env = run.env(nil, { "PATH", "MW_LUA_PATH" }), out = out })
  E.procs[#E.procs + 1] = { stop = function() p:kill("KILL") end }
  return p
end

local function drive(mode, portsfile, server_pid)
  local dir = E.tmpdir()
  local out = dir .. "/result.json"
  local p = spawn({ "tests/bench/hbdriver.lua", mode, portsfile, tostring(INTERVAL), tostring(WARM), tostring(WINDOW), out },
    dir .. "/driver.log")
  core.sleep(WARM)
  local sv0 = B.sample(server_pid)
  core.sleep(WINDOW)
  local sv1 = B.sample(server_pid)
  local code = p:wait(WINDOW + 30)
  if not code then p:kill("KILL"); p:wait(5) end
  p:close()
  local text = B.read(out)
  if not text then error("driver " .. mode .. " wrote no result; its log:\n" .. (B.read(dir .. "/driver.log") or ""), 0) end
  local r = B.cjson.decode(text)
  r.server_cpu = (sv1.cpu - sv0.cpu) / (sv1.t - sv0.t)
  print(string.format("  %s: CPU %.1f%%, RSS %.2f MB, private dirty %.2f MB, %.0f probes/s (%d ok, %d failed), "
    .. "latency p50 %s p99 %s, %d failures; server CPU %.1f%%", mode, r.cpu * 100, r.rss / 1024, r.pd / 1024, r.rate,
    r.ok, r.fail, B.ms(r.p50), B.ms(r.p99), r.failures, r.server_cpu * 100))
  return r
end

return B.main(function()
  B.machine()
  local dir = E.tmpdir()
  local portsfile = dir .. "/ports"
  local total = 2 * (WARM + WINDOW) + 120
  local server = spawn({ "tests/bench/hbserver.lua", tostring(N), portsfile, tostring(total) }, dir .. "/server.log")
  local deadline = core.now() + 30
  while not B.read(portsfile) do
    assert(core.now() < deadline, "the test server did not start: " .. (B.read(dir .. "/server.log") or ""))
    core.sleep(0.05)
  end
  local ok, res = pcall(function()
    local loop = drive("loop", portsfile, server:pid())
    core.sleep(1)
    local mw = drive("mw", portsfile, server:pid())
    core.sleep(1)
    local lean = drive("net", portsfile, server:pid())
    return { loop = loop, mw = mw, net = lean }
  end)
  server:kill("KILL")
  server:wait(5)
  server:close()
  if not ok then error(res, 0) end
  local a, m, l = res.loop, res.mw, res.net
  local function pcent(x) return string.format("%.1f %%", x * 100) end
  local function mb(kb) return string.format("%.2f MB", kb / 1024) end
  B.report(string.format("Heartbeats at scale: %d endpoints every %s, no containers (7)", N, B.ms(INTERVAL)), {
    "", "anchor: bare http.request loop", "mw: Sup:start_heartbeat", "mw/anchor", "reference: bare HTTP/1.0 over mw.net",
  }, {
    { "CPU (one core)", pcent(a.cpu), pcent(m.cpu), B.ratio(m.cpu, a.cpu), pcent(l.cpu) },
    { "RSS", mb(a.rss), mb(m.rss), B.ratio(m.rss, a.rss), mb(l.rss) },
    { "private dirty", mb(a.pd), mb(m.pd), B.ratio(m.pd, a.pd), mb(l.pd) },
    { "probes per second (wanted " .. math.floor(N / INTERVAL) .. ")", string.format("%.0f", a.rate), string.format("%.0f", m.rate),
      B.ratio(m.rate, a.rate), string.format("%.0f", l.rate) },
    { "CPU per probe", string.format("%.0f µs", a.cpu / a.rate * 1e6), string.format("%.0f µs", m.cpu / m.rate * 1e6),
      B.ratio(m.cpu / m.rate, a.cpu / a.rate), string.format("%.0f µs", l.cpu / l.rate * 1e6) },
    { "failed or missed probes in the window", string.format("%d", a.fail), string.format("%d", m.fail), "", string.format("%d", l.fail) },
    { "failures declared (3 misses in a row)", "n/a", string.format("%d", m.failures), "", "n/a" },
    { "probe latency p50 / p99", B.ms(a.p50) .. " / " .. B.ms(a.p99), B.ms(m.p50) .. " / " .. B.ms(m.p99), "",
      B.ms(l.p50) .. " / " .. B.ms(l.p99) },
    { "test server's CPU meanwhile", pcent(a.server_cpu), pcent(m.server_cpu), "", pcent(l.server_cpu) },
  }, {
    "mw: a `mw script` process that requires mw.supervisor, makes one fake component per endpoint "
      .. "(def.heartbeat = HTTP, c.hb.host_port = the endpoint's port) and calls Sup:start_heartbeat for each: mw's own "
      .. "probe tasks, ticks, miss counting and beat(); failures are counted instead of going to the policy",
    "anchor: the same process kind with one task per endpoint looping http.request then sleeping the rest of the interval; "
      .. "reference: the same loop with a minimal HTTP/1.0 GET written over mw.net (connect, write, read to EOF) instead of libcurl",
    string.format("all heartbeats start together (as when mw adopts a stack); %d s warm-up, then a %d s window measured by each "
      .. "driver from /proc/self; the server is one `mw script` process with %d listeners, one connection at a time each", WARM, WINDOW, N),
  })
end)
