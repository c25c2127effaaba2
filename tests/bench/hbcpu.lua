-- Heartbeat CPU in alternation (not part of `make bench`'s list): brings up N busybox httpd
-- components with 1 s HTTP heartbeats once, then lets each mw binary in MW_BINS (a comma list)
-- adopt the running stack in turn, ROUNDS times, and measures over WINDOW seconds its CPU
-- (utime+stime) and the probes it made (connect calls, counted by perf's tracepoint). Two
-- builds compared in alternation on one stack are compared under the same load, which a busy
-- machine moves between runs; the failures column says when a window was disturbed.
--   ./mw script tests/bench/hbcpu.lua   with MW_BINS=/tmp/a/mw,/tmp/b/mw N=100 WINDOW=30 ROUNDS=3
--   HBPATH=published for the published path (default netns)
--   SERVER=keepalive: the components run kahttpd (tests/bench/kahttpd.c, `make build/kahttpd`),
--   which keeps connections as nginx or Go's net/http do, instead of busybox httpd, which
--   closes each; KEEPS=on,off alternates mw's kept connection (MW_HEARTBEAT_KEEPALIVE) instead
--   of binaries
local core = require "mw.core"
local B = require "benchlib"
local E = B.E
local N = B.knob("N", 100)
local WINDOW = B.knob("WINDOW", 20)
local ROUNDS = B.knob("ROUNDS", 1)
local PATH = os.getenv("HBPATH") or "netns"
local HB = '{ interval = "1s", timeout = "1s", misses = 3, grace = "30s" }'
local SERVER = os.getenv("SERVER") or "busybox"
local bins = {}
for b in (os.getenv("MW_BINS") or B.MW_BIN):gmatch("[^,]+") do bins[#bins + 1] = { bin = b } end
if os.getenv("KEEPS") then
  bins = {}
  for k in os.getenv("KEEPS"):gmatch("[^,]+") do bins[#bins + 1] = { bin = B.MW_BIN, keep = k } end
end

return B.main(function()
  E.image()
  local source = B.stack_source(N, { heartbeat = HB })
  if SERVER == "keepalive" then
    local img = E.kahttpd_image()
    source = source:gsub("local CMD = [^\n]*", 'local CMD = { "/bin/kahttpd", "8089" }'):gsub("IMAGE", img)
  end
  local file, name, dir = E.stack("cpu" .. N, source)
  local ok, err = pcall(function()
    for r = 1, ROUNDS do
      for _, which in ipairs(bins) do
        B.MW_BIN = which.bin
        local bin = which.keep and ("keep " .. which.keep) or which.bin
        local h = B.mw({ "run", "--log-format", "json", "--state-dir", dir .. "/state", file },
          { env = { "MW_HEARTBEAT_PATH=" .. PATH, "MW_HEARTBEAT_KEEPALIVE=" .. (which.keep or "on") } })
        local t0 = core.now()
        h.wait_all("healthy", B.names(N), 600)
        local up = core.now() - t0
        core.sleep(3)
        local mark = #h.evs
        local s0 = B.sample(h.pid)
        local _, _, pout = B.run({ "perf", "stat", "-x,", "-e", "syscalls:sys_enter_connect", "-p", tostring(h.pid),
          "--", "sleep", tostring(WINDOW) }, { timeout = WINDOW + 30 })
        local s1 = B.sample(h.pid)
        local conns = tonumber((pout or ""):match("(%d+),,syscalls:sys_enter_connect")) or -1
        local fails = h.failures(mark)
        local la = (io.open("/proc/loadavg"):read("l"))
        local cpu = (s1.cpu - s0.cpu) / (s1.t - s0.t)
        local cps = conns / (s1.t - s0.t)
        print(string.format("round %d %s: up %.1fs CPU %.2f%% = %.0f us/probe at N/s; %.1f connects/s, "
          .. "%.0f us CPU per connect; pd %.2f MB rss %.2f MB, %d failures, load %s",
          r, bin, up, cpu * 100, cpu * 1e6 / N, cps, cpu * 1e6 / cps, s1.pd / 1024, s1.rss / 1024, fails, la))
        io.stdout:flush()
        h.stop()
      end
    end
  end)
  B.remove_stack(name)
  if not ok then error(err, 0) end
end)
