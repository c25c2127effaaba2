-- Warm standby against the real engine: one frozen spare beside the active container, promoted
-- on kill -9, on an OOM kill and on a heartbeat failure; a new spare after each promotion;
-- adoption after mw restarts; a reload drops or asks for it; `mw status` shows it and `mw
-- destroy` removes it.
local t = require "t"
local core = require "mw.core"
local fs = require "mw.fs"
local E = require "engine"

local e = E.engine()

local HB = '{ interval = "300ms", timeout = "2s", misses = 5, grace = "30s" }'

-- One component `web` with a standby; `extra` is more of its fields (Lua source).
local function stack_src(extra, cmd, standby)
  return [[
return { name = "NAME", components = {
  web = { image = "IMAGE", heartbeat = ]] .. HB .. [[, standby = ]] .. (standby or "true") .. [[,
          command = ]] .. (cmd or [[{ "sh", "-c", "mkdir -p /w/debug && echo '{}' > /w/debug/vars && exec httpd -f -p 8089 -h /w" }]])
          .. (extra or "") .. [[ },
} }
]]
end

-- The containers of `web`: the running ones and the paused ones (the frozen standby).
local function split(stack)
  local running, paused, other = {}, {}, {}
  for _, x in ipairs(E.containers(stack).web or {}) do
    if x.State == "running" then running[#running + 1] = x
    elseif x.State == "paused" then paused[#paused + 1] = x
    else other[#other + 1] = x end
  end
  return running, paused, other
end

-- Waits until web has one running and one frozen container (and nothing else, unless
-- `others_ok`), the frozen one not `old` (a hung container not yet removed) -> the active and
-- the standby list entries.
local function one_and_one(stack, what, others_ok, old)
  local active, standby
  t.wait_for(function()
    local running, paused, other = split(stack)
    if #running == 1 and #paused == 1 and (others_ok or #other == 0) and paused[1].Id ~= old then
      active, standby = running[1], paused[1]
      return true
    end
    return false
  end, 60, what or "one running and one frozen container")
  return active, standby
end

local function aliases(id, stack)
  local info = assert(e:inspect(id))
  local ep = (info.NetworkSettings.Networks or {})["mw-" .. stack]
  local set = {}
  for _, a in ipairs(ep and ep.Aliases or {}) do set[a] = true end
  return set, ep ~= nil
end

local function name_of(id)
  local info = assert(e:inspect(id))
  return info.Name
end

-- The checks after a promotion: the standby is the active one, under the alias and the
-- instance's name, heartbeats follow it, and a new standby is frozen beside it.
local function promoted(h, stack, old_active, old_standby, mark, keep)
  local ev = h.wait_event({ event = "promote", component = "web" }, 30, mark)
  print("#   " .. ev.msg)
  t.eq(ev.container, old_standby.Id, "the frozen standby was promoted")
  h.wait_event({ event = "healthy", component = "web" }, 30, mark)
  local active, standby = one_and_one(stack, "a new standby beside the promoted one", keep, old_active.Id)
  t.eq(active.Id, old_standby.Id, "the promoted standby is the active container")
  t.ok(standby.Id ~= old_standby.Id and standby.Id ~= old_active.Id, "a new standby")
  local al, on = aliases(active.Id, stack)
  t.ok(on and al.web, "the promoted container has the component's alias")
  local sal, son = aliases(standby.Id, stack)
  t.ok(not son and not sal.web, "the new standby is off the stack network: not reachable as 'web'")
  t.wait_for(function() return name_of(active.Id) == "/" .. stack .. "-web" end, 30, "the promoted one renamed")
  t.eq(name_of(standby.Id), "/" .. stack .. "-web-standby")
  return active, standby
end

t.test("a frozen standby is kept off the alias, promoted on kill -9, and replaced", function()
  local file, stack = E.stack("sbkill", stack_src())
  local h = E.mw({ "run", "--log-format", "json", file })
  h.wait_event({ event = "healthy", component = "web" }, 60)
  local active, standby = one_and_one(stack)
  local al, on = aliases(standby.Id, stack)
  t.ok(not on and not al.web, "the frozen standby is off the stack network: not reachable as 'web'")
  t.eq(#(standby.Ports or {}) > 0 and standby.Ports[1].IP or "127.0.0.1", "127.0.0.1", "only loopback")
  -- mw status shows it
  local code, out = E.mw_sync({ "status", "--stack", stack })
  t.eq(code, 0, out)
  t.match(out, "web standby%s+standby %(frozen%)", "status shows the standby")
  local mark = h.mark()
  local info = assert(e:inspect(active.Id))
  assert(core.kill(info.State.Pid, "KILL"))
  local failed = h.wait_event({ event = "failed", component = "web" }, 30, mark)
  t.match(failed.msg, "promote", "the default policy promotes")
  promoted(h, stack, active, standby, mark)
  t.wait_for(function()
    local _, _, code2 = e:inspect(active.Id)
    return code2 == "notfound"
  end, 30, "the failed container removed")
  t.eq(h.stop(), 0)
end)

t.test("a standby is promoted when the active one is OOM-killed; keep_failed keeps the dead one", function()
  -- the active shell grows a variable once /w/boom exists (only in the active container)
  local cmd = [[{ "sh", "-c", "mkdir -p /w/debug && echo '{}' > /w/debug/vars && httpd -p 8089 -h /w && ]]
    .. [[while [ ! -f /w/boom ]; do sleep 0.05; done; x=0123456789abcdef; while :; do x=$x$x; done" }]]
  local file, stack = E.stack("sboom", stack_src(', memory = "24m"', cmd, "{ keep_failed = true }"))
  local h = E.mw({ "run", "--log-format", "json", file })
  h.wait_event({ event = "healthy", component = "web" }, 60)
  local active, standby = one_and_one(stack)
  local mark = h.mark()
  assert(e:exec(active.Id, { "touch", "/w/boom" }))
  local _, stb = promoted(h, stack, active, standby, mark, true)
  -- the dead one is kept for its logs, stopped, under <name>-failed, and was OOM-killed
  local info
  t.wait_for(function()
    info = e:inspect(active.Id)
    return info and info.Name == "/" .. stack .. "-web-failed" and info.State.Status == "exited"
  end, 30, "the failed container kept as -failed")
  t.eq(info.State.OOMKilled, true, "the engine says it was OOM-killed")
  t.ok(stb, "a new standby")
  t.eq(h.stop(), 0)
end)

t.test("a standby is promoted on a heartbeat failure (the active one hangs)", function()
  local file, stack = E.stack("sbhang", stack_src())
  local h = E.mw({ "run", "--log-format", "json", file })
  h.wait_event({ event = "healthy", component = "web" }, 60)
  local active, standby = one_and_one(stack)
  local mark = h.mark()
  assert(e:pause(active.Id))       -- hung: its heartbeat stops answering
  local ev = h.wait_event({ event = "failed", component = "web" }, 30, mark)
  t.eq(ev.reason, "heartbeat")
  -- the hung one is still paused until it is removed: wait on the running/frozen pair that
  -- has the promoted one running
  promoted(h, stack, active, standby, mark)
  t.eq(h.stop(), 0)
end)

t.test("after mw restarts it adopts the active and the frozen standby, and promotes it once", function()
  local file, stack = E.stack("sbadopt", stack_src())
  local h = E.mw({ "run", "--log-format", "json", file })
  h.wait_event({ event = "healthy", component = "web" }, 60)
  local active, standby = one_and_one(stack)
  t.eq(h.stop(), 0)
  local h2 = E.mw({ "run", "--log-format", "json", file })
  h2.wait_event({ event = "healthy", component = "web" }, 60)
  local ev = h2.wait_event({ event = "standby", component = "web" }, 30)
  t.match(ev.msg, "adopted the frozen standby", ev.msg)
  local a2, s2 = one_and_one(stack)
  t.eq(a2.Id, active.Id, "the active one adopted")
  t.eq(s2.Id, standby.Id, "the frozen one adopted as the standby, not started")
  for _, x in ipairs(h2.events()) do
    t.ok(x.event ~= "failed" and x.event ~= "promote", "no failure or promotion at adoption: " .. tostring(x.msg))
  end
  local mark = h2.mark()
  local info = assert(e:inspect(active.Id))
  assert(core.kill(info.State.Pid, "KILL"))
  promoted(h2, stack, active, standby, mark)
  local n = 0
  for _, x in ipairs(h2.events()) do if x.event == "promote" then n = n + 1 end end
  t.eq(n, 1, "promoted once")
  t.eq(h2.stop(), 0)
end)

t.test("a reload that drops standby removes it; one that asks again makes one", function()
  local file, stack = E.stack("sbreload", stack_src())
  local h = E.mw({ "run", "--log-format", "json", file })
  h.wait_event({ event = "healthy", component = "web" }, 60)
  local active = one_and_one(stack)
  assert(fs.write_atomic(file, E.render(stack_src(nil, nil, "false"), stack), 420))
  t.wait_for(function()
    local running, paused = split(stack)
    return #running == 1 and #paused == 0 and running[1].Id == active.Id
  end, 60, "the standby removed, the active one untouched")
  assert(fs.write_atomic(file, E.render(stack_src(), stack), 420))
  local a2 = one_and_one(stack, "a standby again")
  t.eq(a2.Id, active.Id, "the active one untouched")
  t.eq(h.stop(), 0)
end)

t.test("mw destroy removes the standby with the rest", function()
  local file, stack = E.stack("sbdestroy", stack_src())
  local h = E.mw({ "run", "--log-format", "json", file })
  h.wait_event({ event = "healthy", component = "web" }, 60)
  one_and_one(stack)
  t.eq(h.stop(), 0)
  local code, out = E.mw_sync({ "status", "--stack", stack })
  t.eq(code, 0, out)
  t.match(out, "web standby%s+standby %(frozen%)", "status from the engine shows the standby")
  code, out = E.mw_sync({ "destroy", file })
  t.eq(code, 0, out)
  t.eq(next(E.containers(stack)), nil, "no container left: " .. out)
end)

os.exit(E.run(t))
