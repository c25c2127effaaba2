-- Several mw for one stack: exactly one active, the rest in line; kill -9 and --force hand over.
local t = require "t"
local core = require "mw.core"
local fs = require "mw.fs"
local E = require "engine"

local STACK = [[
return { name = "NAME", components = {
  web = { image = "IMAGE", heartbeat = { interval = "200ms", grace = "10s" },
          command = { "sh", "-c", "mkdir -p /w/debug && echo '{}' > /w/debug/vars && exec httpd -f -p 8089 -h /w" } },
} }
]]

local function state_dir()
  local d = E.tmpdir() .. "/state dir with spaces"
  assert(fs.mkdirp(d, 448))
  return d
end

local function active(h)
  for _, ev in ipairs(h.events()) do if ev.event == "start" then return true end end
  return false
end

local function wait_active(list, timeout)
  local deadline = core.now() + (timeout or 30)
  while true do
    local act = {}
    for i, h in ipairs(list) do if not h.closed and active(h) then act[#act + 1] = i end end
    if #act > 0 then return act end
    if core.now() > deadline then error("no mw became active", 2) end
    core.sleep(0.02)
  end
end

t.test("five mw at once: one active, the others take over in the order they queued", function()
  local file, stack = E.stack("five", STACK)
  local dir = state_dir()
  local hs = {}
  for i = 1, 5 do
    hs[i] = E.mw({ "run", "--log-format", "json", "--state-dir", dir, file })
    -- a known queue order, to check turns are taken in it: each is in line before the next starts
    hs[i].wait_event({ event = i == 1 and "start" or "waiting" }, 20)
  end
  local first = wait_active(hs)
  t.same(first, { 1 }, "only the first is active")
  E.wait_running(stack, { "web" })
  -- the others say whom they wait for
  for i = 2, 5 do hs[i].wait_event({ event = "waiting" }, 10) end
  local id = E.containers(stack).web[1].Id
  for i = 1, 4 do
    t.eq(hs[i].stop(), 0, "mw " .. i .. " exits 0")
    local act = wait_active(hs, 10)
    t.same(act, { i + 1 }, "mw " .. (i + 1) .. " is next")
    -- exactly one active at a time
    for j = i + 2, 5 do t.ok(not active(hs[j]), "mw " .. j .. " still waits") end
  end
  hs[5].wait_event({ event = "adopted", component = "web" }, 20)
  t.eq(E.containers(stack).web[1].Id, id, "the container was adopted by every successor")
  hs[5].stop()
end)

-- How fast a handover is belongs to make bench; here, that it happens and to whom.
t.test("kill -9 of the active mw: the next becomes active", function()
  local file = E.stack("k9", STACK)
  local dir = state_dir()
  local a = E.mw({ "run", "--log-format", "json", "--state-dir", dir, file })
  a.wait_event({ event = "start" }, 20)
  local b = E.mw({ "run", "--log-format", "json", "--state-dir", dir, file })
  b.wait_event({ event = "waiting" }, 10)
  local t0 = core.now()
  core.kill(a.pid, "KILL")
  b.wait_event({ event = "start" }, 10)
  print(string.format("#   the next was active %.3f s after the kill", core.now() - t0))
  a.stop("KILL")
  b.stop()
end)

t.test("--force hands over and no container is restarted", function()
  local file, stack = E.stack("force", STACK)
  local dir = state_dir()
  local a = E.mw({ "run", "--log-format", "json", "--state-dir", dir, file })
  a.wait_event({ event = "healthy", component = "web" }, 30)
  local before = E.containers(stack).web[1]
  local info1 = assert(E.engine():inspect(before.Id))
  local t0 = core.now()
  local b = E.mw({ "run", "--force", "--log-format", "json", "--state-dir", dir, file })
  a.wait_event({ event = "replaced" }, 10)
  local code = a.p:wait(10)
  t.eq(code, 0, "the replaced mw exits 0")
  print(string.format("#   the old mw stepped down %.3f s after the new one started", core.now() - t0))
  b.wait_event({ event = "adopted", component = "web" }, 10)
  local after = E.containers(stack).web[1]
  local info2 = assert(E.engine():inspect(after.Id))
  t.eq(after.Id, before.Id, "same container")
  t.eq(info2.State.StartedAt, info1.State.StartedAt, "not restarted")
  b.stop()
end)

t.test("a stale wait file of a dead mw does not block the line", function()
  local file, stack = E.stack("stale", STACK)
  local dir = state_dir()
  local qdir = dir .. "/" .. stack .. "/queue"
  assert(fs.mkdirp(qdir, 448))
  assert(fs.write_atomic(qdir .. "/00000000000000000001-999999", '{"pid":999999,"host":"x","since":1}\n', 384))
  local a = E.mw({ "run", "--log-format", "json", "--state-dir", dir, file })
  a.wait_event({ event = "start" }, 20)
  t.eq(fs.stat(qdir .. "/00000000000000000001-999999"), nil, "the stale file was removed")
  t.eq(fs.stat(dir).mode, 448, "state dir is 0700")
  a.stop()
end)

t.test("SIGINT while waiting in line leaves the line and exits 0", function()
  local file = E.stack("int", STACK)
  local dir = state_dir()
  local a = E.mw({ "run", "--log-format", "json", "--state-dir", dir, file })
  a.wait_event({ event = "start" }, 20)
  local b = E.mw({ "run", "--log-format", "json", "--state-dir", dir, file })
  b.wait_event({ event = "waiting" }, 10)
  b.p:kill("INT")
  t.eq(b.p:wait(5), 0)
  local c = E.mw({ "run", "--log-format", "json", "--state-dir", dir, file })
  c.wait_event({ event = "waiting" }, 10)
  a.stop()
  c.wait_event({ event = "start" }, 10)
  c.stop()
end)

os.exit(E.run(t))
