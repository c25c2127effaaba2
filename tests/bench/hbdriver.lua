-- The heartbeater of benchmark 7, measuring itself: MODE "mw" feeds mw's own supervisor one fake
-- component per endpoint (c.hb.host_port = the endpoint) and calls Sup:start_heartbeat on each,
-- so the probes, ticks, misses and beats are mw's code; MODE "loop" is the bare equivalent, one
-- task per endpoint doing http.request every INTERVAL; MODE "net" the same with a minimal
-- HTTP/1.0 GET over mw.net instead of libcurl (what a lighter probe would cost). After WARM
-- seconds it samples
-- /proc/self, counts for WINDOW seconds, samples again and writes JSON to OUT.
-- usage: mw script tests/bench/hbdriver.lua MODE PORTSFILE INTERVAL WARM WINDOW OUT
local core = require "mw.core"
local http = require "mw.http"
local fs = require "mw.fs"
local cjson = require "cjson"

local mode, portsfile, interval, warm, window, out = ...
interval, warm, window = tonumber(interval), tonumber(warm), tonumber(window)

local ports = {}
for p in (assert(fs.read(portsfile))):gmatch("%d+") do ports[#ports + 1] = tonumber(p) end

local function read(path)
  local f = io.open(path, "rb")
  if not f then return "" end
  local s = f:read("a")
  f:close()
  return s
end

local function sample()
  local rest = read("/proc/self/stat"):match("%) (.*)$")
  local f = {}
  for x in rest:gmatch("%S+") do f[#f + 1] = x end
  local status, rollup = read("/proc/self/status"), read("/proc/self/smaps_rollup")
  return { t = core.now(), cpu = (tonumber(f[12]) + tonumber(f[13])) / 100,
           rss = tonumber(status:match("VmRSS:%s*(%d+)")), pd = tonumber(rollup:match("Private_Dirty:%s*(%d+)")) }
end

-- counters with a fixed-size latency histogram (0.25 ms buckets up to 2 s): memory stays flat
local st = { ok = 0, fail = 0, failures = 0, hist = {} }
local function record(ok, latency)
  if ok then
    st.ok = st.ok + 1
    local b = math.min(8000, math.floor(latency * 4000))
    st.hist[b] = (st.hist[b] or 0) + 1
  else
    st.fail = st.fail + 1
  end
end
local function pct(p)
  local total = 0
  for _, v in pairs(st.hist) do total = total + v end
  local want, acc = math.ceil(total * p / 100), 0
  for b = 0, 8000 do
    acc = acc + (st.hist[b] or 0)
    if acc >= want and total > 0 then return (b + 1) / 4000 end
  end
  return nil
end

local HB = { kind = "http", port = 8089, path = "/debug/vars", interval = interval, timeout = 1, misses = 3, grace = 10 }

if mode == "mw" then
  local log = require "mw.log"
  log.quiet = true                 -- "healthy" lines at start are info
  local supervisor = require "mw.supervisor"
  local sup = supervisor.new { engine = {}, stack = { name = "hbscale", order = {}, components = {} } }
  sup.on_beat = function(_, ok, latency) record(ok and latency ~= nil, latency) end
  -- a failure would go to the policy and the engine: count it and keep beating instead
  -- (as a restart would, the clock of "no good answer since" starts again)
  sup.failure = function(_, c) st.failures = st.failures + 1; c.hb.misses = 0; c.hb.last_ok_at = core.now() end
  for i, port in ipairs(ports) do
    local c = { key = "e" .. i, name = "e" .. i, index = 1, def = { heartbeat = HB }, hb = { misses = 0, host_port = port },
                probes = {}, state = "starting", restarts = 0, history = {} }
    sup:start_heartbeat(c)
  end
elseif mode == "net" then
  local net = require "mw.net"
  local REQ = "GET /debug/vars HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n"
  for _, port in ipairs(ports) do
    core.spawn(function()
      while true do
        local t = core.now()
        local ok = false
        local c = net.connect("127.0.0.1", port, 1)
        if c then
          c:write(REQ)
          local buf = ""
          while true do
            local d = c:read(1)
            if not d then break end
            buf = buf .. d
          end
          c:close()
          ok = buf:match("^HTTP/1%.%d (%d+)") == "200"
        end
        local lat = core.now() - t
        record(ok, lat)
        local left = interval - lat
        if left > 0 then core.sleep(left) end
      end
    end, "net")
  end
else
  for _, port in ipairs(ports) do
    local url = "http://127.0.0.1:" .. port .. "/debug/vars"
    core.spawn(function()
      while true do
        local t = core.now()
        local res = http.request { url = url, timeout = 1 }
        local lat = core.now() - t
        record(res ~= nil and res.status == 200, lat)
        local left = interval - lat
        if left > 0 then core.sleep(left) end
      end
    end, "loop")
  end
end

core.sleep(warm)
st.ok, st.fail, st.failures, st.hist = 0, 0, 0, {}
local s0 = sample()
core.sleep(window)
local s1 = sample()
local secs = s1.t - s0.t
assert(fs.write_atomic(out, cjson.encode {
  mode = mode, endpoints = #ports, secs = secs, cpu = (s1.cpu - s0.cpu) / secs, rss = s1.rss, pd = s1.pd,
  ok = st.ok, fail = st.fail, failures = st.failures, rate = (st.ok + st.fail) / secs,
  p50 = pct(50), p99 = pct(99),
}, 420))
os.exit(0)
