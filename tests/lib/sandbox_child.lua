-- Child of tests/unit/test_sandbox.lua: loads tests/sandbox/attacks.lua and makes the
-- supervisor call one component's user function the way it does in a running stack, printing
-- what it decided and how long that took. Run in a child with a timeout, so a regression that
-- hangs the supervisor fails the test instead of hanging the suite.
--   mw script tests/lib/sandbox_child.lua <root> policy|check|decide|pattern <component>
local core = require "mw.core"
local stack = require "mw.stack"
local supervisor = require "mw.supervisor"
local httpd = require "httpd"

local root, mode, name = ...
local s = assert(stack.load(root .. "/tests/sandbox/attacks.lua"))
local sup = supervisor.new { engine = {}, stack = s }
local def = s.components[name]
local t0 = core.now()

if mode == "policy" then
  local c = { key = name, name = name, index = 1, def = def, history = {}, restarts = 0 }
  local record = { component = name, instance = 1, reason = "exited", exit_code = 1, oom = false,
                   uptime = 0, time = core.time(), restarts = 0, history = {} }
  local action, delay = sup:decide(c, record)
  print(string.format("RESULT %s %s %.3f", action, delay, core.now() - t0))
  print("RECORD " .. type(record.reason) .. " " .. type(record.history))
elseif mode == "check" then
  local srv = httpd.start { ["/debug/vars"] = function() return 200, "ok" end }
  local failed = {}
  sup.failure = function(_, c, reason, info)
    failed[c.key] = { reason = reason, message = info.message, at = core.now() - t0 }
    c.handling = true
    c.state = "restarting"
    sup:stop_heartbeat(c)
  end
  local function instance(key, hb)
    hb = setmetatable({ interval = 0.5, timeout = 1, misses = 3, grace = 1 }, { __index = hb })
    local c = { key = key, name = key, index = 1, def = { heartbeat = hb },
                hb = { misses = 0, host_port = srv.port }, probes = {}, state = "starting", restarts = 0, history = {} }
    sup:start_heartbeat(c)
    return c
  end
  local bad = instance(name, def.heartbeat)
  local good = instance("c-good", s.components["c-good"].heartbeat)
  local deadline = core.now() + 20
  while not failed[name] and core.now() < deadline do core.sleep(0.02) end
  -- the other instance went on being probed: it is healthy and was never failed
  while good.state ~= "healthy" and core.now() < deadline do core.sleep(0.02) end
  local f = failed[name]
  print(string.format("RESULT %s %.3f %s", f and f.reason or "none", f and f.at or -1, f and f.message or ""))
  print("GOOD " .. good.state .. " " .. tostring(failed["c-good"] == nil))
  sup:stop_heartbeat(bad)
  sup:stop_heartbeat(good)
  srv.stop()
elseif mode == "pattern" then
  local ok, err = core.budget(function() return ("a"):rep(3000):match(("a*"):rep(15) .. "b") end, { seconds = 0.2 })
  local took = core.now() - t0
  print("BACKTRACK " .. tostring(ok) .. " " .. tostring(err))
  -- a periodic needle over 48 MiB: linear, but longer than the budget
  local hay = ("a"):rep(48 * 1048576)
  local needle = ("a"):rep(5000) .. "b"
  t0 = core.now()
  ok, err = core.budget(function()
    for _ = 1, 100 do hay:find(needle, 1, true) end
  end, { seconds = 0.2, instructions = 1e12, memory = 1048576 })
  print("PLAIN " .. tostring(ok) .. " " .. tostring(err))
  print(string.format("TOOK %.3f", math.max(took, core.now() - t0)))
elseif mode == "decide" then
  local g = sup.groups[name]
  sup:autoscale_once(g)
  print(string.format("RESULT %d %.3f", g.desired, core.now() - t0))
end
