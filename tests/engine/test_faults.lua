-- Faults against the real engine, mostly through build/mw-fault-proxy: mw killed -9 at random
-- moments of start-up and reconcile, injected errors, resets, delays and cut event streams,
-- the engine away and back, and a crash-looping component with mw's memory and fds watched.
--
-- MW_FAULT_SEED fixes the random kill moments; MW_FAULT_TRIALS the number of kills (20);
-- MW_CRASHLOOP_SECONDS the crash loop's length (120; make soak uses 600).
local t = require "t"
local core = require "mw.core"
local fs = require "mw.fs"
local cjson = require "cjson"
local E = require "engine"
local P = require "faults.proxy"

local e = E.engine()
local SEED = tonumber(os.getenv("MW_FAULT_SEED") or "") or (math.floor(core.time() * 1000) % 1000003)
local TRIALS = tonumber(os.getenv("MW_FAULT_TRIALS") or "") or 20
local LOOP_SECONDS = tonumber(os.getenv("MW_CRASHLOOP_SECONDS") or "") or 120
print(string.format("# seed %d (MW_FAULT_SEED=%d to repeat), %d kill trials, crash loop %ds", SEED, SEED, TRIALS,
  LOOP_SECONDS))
math.randomseed(SEED)

local HTTPD = [[
local HB = { interval = "200ms", timeout = "1s", misses = 3, grace = "20s" }
local function httpd() return { "sh", "-c", "mkdir -p /w/debug && echo '{}' > /w/debug/vars && exec httpd -f -p 8089 -h /w" } end
]]

-- db <- api <- web (healthy conditions), worker without a heartbeat: seen only through events
local STACK = HTTPD .. [[
return { name = "NAME", components = {
  db     = { image = "IMAGE", command = httpd(), heartbeat = HB },
  api    = { image = "IMAGE", command = httpd(), heartbeat = HB, depends_on = { db = "healthy" }, env = { GEN = "GENERATION" } },
  web    = { image = "IMAGE", command = httpd(), heartbeat = HB, depends_on = { api = "healthy" } },
  worker = { image = "IMAGE", command = { "sh", "-c", "exec sleep 100000" } },
} }
]]
local NAMES = { "db", "api", "web", "worker" }
local HB = { db = true, api = true, web = true }

local function stack_file(short, gen)
  return E.stack(short, (STACK:gsub("GENERATION", tostring(gen or 0))))
end

local function rewrite(file, gen)
  local src = assert(fs.read(file))
  src = src:gsub('GEN = "%d+"', 'GEN = "' .. gen .. '"')
  assert(fs.write_atomic(file, src, 420))
end

-- Lines where the core's task logger reported a task of mw that raised.
local function task_failures(text)
  local out = {}
  for line in text:gmatch("[^\n]+") do
    if line:find("^mw: task .- failed:") then out[#out + 1] = line end
  end
  return out
end

local function alive(h)
  if h.closed then return false end
  return h.p:wait(0) == nil
end

local function status_doc(state_dir, stack)
  local s = fs.read(state_dir .. "/" .. stack .. "/status.json")
  local ok, doc = pcall(cjson.decode, s or "")
  return ok and type(doc) == "table" and doc or nil
end

-- Waits until the running mw says every component is healthy (running, for worker) and the
-- engine agrees: status.json trails mw's log by up to 20 ms, so just after a failure it can
-- still show the state from before it.
local function wait_converged(h, state_dir, stack, timeout)
  local deadline = core.now() + (timeout or 90)
  while true do
    local doc = status_doc(state_dir, stack)
    local ok = doc ~= nil and doc.pid == h.pid
    local states = {}
    if ok then
      for _, c in ipairs(doc.components or {}) do states[c.name] = c.state end
      for _, n in ipairs(NAMES) do
        local want = HB[n] and "healthy" or "running"
        if states[n] ~= want then ok = false end
      end
    end
    if ok then
      local by = E.containers(stack)
      for _, n in ipairs(NAMES) do
        local l = by[n] or {}
        if #l ~= 1 or l[1].State ~= "running" then ok = false end
      end
    end
    if ok then return states end
    if not alive(h) then error("mw exited while converging; log:\n" .. h.text(), 2) end
    if core.now() > deadline then
      error("not converged within " .. (timeout or 90) .. "s: " .. cjson.encode(states) .. "; log tail:\n"
        .. h.text():sub(-3000), 2)
    end
    core.sleep(0.1)
  end
end

-- The engine's view: exactly one running container per component under its own name, joined
-- to its one network holder (mw.holder, <name>.net), no other container or network of the
-- stack, labelled or not.
local function check_engine(stack)
  local by = E.containers(stack)
  for _, n in ipairs(NAMES) do
    local l = by[n] or {}
    t.eq(#l, 1, "containers for " .. n)
    t.eq(l[1].State, "running", n .. " state")
    t.eq(l[1].Names[1], "/" .. stack .. "-" .. n, n .. " name")
  end
  for comp in pairs(by) do
    local known = false
    for _, n in ipairs(NAMES) do if n == comp then known = true end end
    t.ok(known, "a container for an unknown component " .. tostring(comp))
  end
  -- by name: nothing of the stack's that lacks the labels
  local named = assert(e:list { name = { "^/" .. stack .. "-" } })
  local labelled, holders = 0, {}
  for _, x in ipairs(named) do
    local labels = x.Labels or {}
    if labels["mw.stack"] == stack then labelled = labelled + 1 end
    if labels["mw.holder"] then
      t.eq(x.Names[1], "/" .. stack .. "-" .. labels["mw.holder"] .. ".net", "a holder's name")
      t.eq(x.State, "running", labels["mw.holder"] .. "'s holder state")
      t.ok(not holders[labels["mw.holder"]], "one holder for " .. labels["mw.holder"])
      holders[labels["mw.holder"]] = x.Id
    end
  end
  for _, n in ipairs(NAMES) do
    t.eq((by[n][1].HostConfig or {}).NetworkMode, "container:" .. tostring(holders[n]), n .. " joins its holder")
  end
  t.eq(#named, 2 * #NAMES, "containers named after the stack (each component's and its holder)")
  t.eq(labelled, 2 * #NAMES, "all of them labelled")
  local nets = assert(e:network_list { label = { "used-by=millwright", "mw.stack=" .. stack } })
  t.eq(#nets, 1, "networks of the stack")
  local byname = assert(e:network_list { name = { "mw-" .. stack } })
  local exact = 0
  for _, n in ipairs(byname) do if n.Name == "mw-" .. stack then exact = exact + 1 end end
  t.eq(exact, 1, "networks named mw-" .. stack)
  return by
end

---------------------------------------------------------------------------------------------

t.test(string.format("kill -9 at random moments of start-up and reconcile (%d trials), then one mw converges",
  TRIALS), function()
  local file, stack = stack_file("kill", 0)
  local state = E.tmpdir()
  local gen = 0
  local delays, phases = {}, {}
  local t0 = core.now()
  for i = 1, TRIALS do
    -- give the next mw something to reconcile: a changed definition, a removed container
    if i % 4 == 0 then gen = gen + 1; rewrite(file, gen) end
    if i % 3 == 0 then
      local by = E.containers(stack)
      local victim = NAMES[math.random(#NAMES)]
      for _, x in ipairs(by[victim] or {}) do e:remove(x.Id, { force = true }) end
    end
    local h = E.mw({ "run", "--log-format", "json", "--state-dir", state, file })
    local d = math.random() * 1.5
    delays[#delays + 1] = string.format("%.2f", d)
    core.sleep(d)
    local last = h.events()
    local made = 0
    for _, ev in ipairs(last) do if ev.event == "network" then made = made + 1 end end
    phases[#phases + 1] = (#last > 0 and last[#last].event or "-") .. (made > 0 and "(net)" or "")
    h.p:kill("KILL")
    h.p:wait(10)
    h.p:close()
    h.closed = true
    local bad = task_failures(h.text())
    t.eq(#bad, 0, "trial " .. i .. ": " .. table.concat(bad, "\n"))
  end
  print(string.format("#   kill delays (s): %s", table.concat(delays, " ")))
  print(string.format("#   last event before each kill: %s", table.concat(phases, " ")))
  -- a kill during the network create can leave two networks of the stack's name (the engine
  -- lets concurrent creates of one name both land): the last mw must get past that too
  local nets = e:network_list { label = { "used-by=millwright", "mw.stack=" .. stack } } or {}
  if #nets > 1 then print(string.format("#   %d networks of the stack before the last mw", #nets)) end
  local h = E.mw({ "run", "--log-format", "json", "--state-dir", state, file })
  local c0 = core.now()
  wait_converged(h, state, stack, 120)
  print(string.format("#   %d kills in %.1fs; the last mw converged in %.1fs", TRIALS, c0 - t0, core.now() - c0))
  local by = check_engine(stack)
  -- the final definition is the one running
  local info = assert(e:inspect(by.api[1].Id))
  local genv
  for _, kv in ipairs(info.Config.Env or {}) do genv = kv:match("^GEN=(.*)$") or genv end
  t.eq(genv, tostring(gen), "api runs the last definition")
  t.eq(#task_failures(h.text()), 0, "no task failed in the last mw")
  t.ok(alive(h), "mw runs")
  t.eq(h.stop(), 0)
end)

---------------------------------------------------------------------------------------------

t.test("errors, resets, delays and cut event streams: mw recovers every component and never crashes", function()
  local px = P.start { dir = E.tmpdir(), seed = SEED, rules = {
    "error path=/containers/create count=2",
    "error path=/start count=2",
    "reset path=/containers/create count=1",
    "delay path=/json ms=300 skip=1 count=12",      -- every one after the first, until 12: it must fire while coming up
    "truncate path=/events bytes=60 count=3",
  } }
  local file, stack = stack_file("inject", 0)
  local state = E.tmpdir()
  local h = P.mw(E, px, { "run", "--log-format", "json", "--state-dir", state, file })
  local t0 = core.now()
  local ok, err = pcall(wait_converged, h, state, stack, 120)
  local up = core.now() - t0
  local s1 = px:stats()
  if not ok then px:stop() error(err, 0) end
  -- faults during supervision: kill two containers behind mw's back while start, inspect and
  -- the events stream fail
  px:add("error path=/start count=1")
  px:add("reset path=/start count=1")
  px:add("delay path=/json ms=500 count=3")
  px:add("truncate path=/events bytes=10 count=2")
  px:kill()          -- drop every open connection: the event streams end mid-transfer
  local by = E.containers(stack)
  assert(e:kill(by.web[1].Id, "KILL"))
  assert(e:kill(by.worker[1].Id, "KILL"))
  local t1 = core.now()
  local mark = #h.events()
  h.wait_event({ event = "healthy", component = "web" }, 60, mark)
  ok, err = pcall(wait_converged, h, state, stack, 60)
  local again = core.now() - t1
  local s2 = px:stats()
  px:stop()
  if not ok then error(err, 0) end
  check_engine(stack)
  t.ok(alive(h), "mw runs")
  local bad = task_failures(h.text())
  t.eq(#bad, 0, table.concat(bad, "\n"))
  local fired = {}
  for _, r in ipairs(s2.rules) do fired[#fired + 1] = string.format("%s %s: %d/%d", r.action, r.path, r.fired, r.matched) end
  print(string.format("#   converged in %.1fs under faults (%d requests, %d injected); recovered from 2 kills in %.1fs",
    up, s1.requests, s1.injected, again))
  print("#   rules fired/matched: " .. table.concat(fired, "; "))
  for i = 1, 5 do t.ok(s1.rules[i].fired >= 1, "rule " .. i .. " fired during start-up") end
  local lost = 0
  for _, ev in ipairs(h.events()) do
    if ev.event == "engine" and tostring(ev.msg):find("lost the engine") then lost = lost + 1 end
  end
  t.ok(lost >= 3, "the cut event streams were noticed (" .. lost .. ")")
  t.eq(h.stop(), 0)
end)

-- A reset of an idempotent call mw makes at start-up (list containers, list networks).
local function startup_reset_case()
  local px = P.start { dir = E.tmpdir(), rules = { "reset path=/containers/json count=2" } }
  local file, stack = stack_file("reset", 0)
  local state = E.tmpdir()
  local h = P.mw(E, px, { "run", "--log-format", "json", "--state-dir", state, file })
  local ok, err = pcall(wait_converged, h, state, stack, 60)
  px:stop()
  if not ok then error(err, 0) end
  h.stop()
end
t.test("a reset of the start-up container list is retried (GET is idempotent)", startup_reset_case)

-- After the event stream comes back mw re-lists the containers to catch what it missed; when
-- that list fails it must be retried, or a component without a heartbeat that died in the gap
-- would never be noticed.
local function resync_case()
  local px = P.start { dir = E.tmpdir() }
  local file, stack = stack_file("resync", 0)
  local state = E.tmpdir()
  local h = P.mw(E, px, { "run", "--log-format", "json", "--state-dir", state, file })
  local ok, err = pcall(wait_converged, h, state, stack, 90)
  if not ok then px:stop() error(err, 0) end
  px:add("reset path=/containers/json count=1")
  px:down()
  assert(e:kill(E.containers(stack).worker[1].Id, "KILL"))
  core.sleep(1)
  px:up()
  local mark = #h.events()
  ok, err = pcall(function()
    h.wait_event({ event = "failed", component = "worker" }, 20, mark)
    -- status.json trails the log by up to 20 ms: wait for the restart itself, not a stale file
    h.wait_event({ event = "restarted", component = "worker" }, 20, mark)
    wait_converged(h, state, stack, 60)
    check_engine(stack)
  end)
  px:stop()
  if not ok then error(tostring(err) .. "\nmw's log:\n" .. h.text(), 0) end
  h.stop()
end
t.test("a failed re-list after the event stream is back is retried; a death in the gap is seen", resync_case)

-- What a kill -9 in the middle of the network create can leave: the engine (20.10) lets two
-- concurrent creates of one name both succeed even with CheckDuplicate, so the old mw's
-- create and the new mw's both land. Seen in the kill trials; made deterministic here.
local function duplicate_network_case()
  local file, stack = stack_file("dupnet", 0)
  local state = E.tmpdir()
  local labels = { ["used-by"] = "millwright", ["mw.stack"] = stack }
  for _ = 1, 2 do
    assert(e:_json("networks/create", "POST", "/networks/create",
      { json = { Name = "mw-" .. stack, Driver = "bridge", Labels = labels } }))
  end
  local h = E.mw({ "run", "--log-format", "json", "--state-dir", state, file })
  wait_converged(h, state, stack, 60)
  check_engine(stack)
  h.stop()
end
t.test("two labelled networks of the stack's name (a kill during create): mw keeps one and converges",
    duplicate_network_case)

---------------------------------------------------------------------------------------------

t.test("the engine goes away and comes back: mw waits with backoff, resumes events, reconciles", function()
  local px = P.start { dir = E.tmpdir() }
  local file, stack = stack_file("away", 0)
  local state = E.tmpdir()
  local h = P.mw(E, px, { "run", "--log-format", "json", "--state-dir", state, file })
  local ok, err = pcall(wait_converged, h, state, stack, 90)
  if not ok then px:stop() error(err, 0) end
  local before = E.containers(stack)
  local mark = #h.events()
  px:down()
  local t0 = core.now()
  h.wait_event({ event = "engine" }, 10, mark)
  -- while it is away: a component without a heartbeat dies (only the events or a re-list
  -- can tell), and one with a heartbeat is killed (mw tries to recover and cannot reach it)
  assert(e:kill(before.worker[1].Id, "KILL"))
  assert(e:kill(before.web[1].Id, "KILL"))
  local away = 6
  while core.now() - t0 < away do
    t.ok(alive(h), "mw runs while the engine is away")
    core.sleep(0.2)
  end
  local retries = {}
  for i = mark + 1, #h.events() do
    local ev = h.events()[i]
    local d = ev.event == "engine" and tostring(ev.msg):match("retrying in (%S+)")
    if d then retries[#retries + 1] = d end
  end
  px:up()
  local t1 = core.now()
  h.wait_event({ event = "engine", msg = "event stream back; checking every component" }, 30, mark)
  local back = core.now() - t1
  ok, err = pcall(wait_converged, h, state, stack, 90)
  if not ok then px:stop() error(err, 0) end
  local rec = core.now() - t1
  check_engine(stack)
  -- the stream really resumed: a death now is seen through the events
  local after = E.containers(stack)
  local mark2 = #h.events()
  assert(e:kill(after.worker[1].Id, "KILL"))
  h.wait_event({ event = "failed", component = "worker" }, 15, mark2)
  ok, err = pcall(wait_converged, h, state, stack, 60)
  px:stop()
  if not ok then error(err, 0) end
  check_engine(stack)
  print(string.format("#   away %.0fs; retries said: %s; stream back %.1fs after, all converged %.1fs after",
    away, table.concat(retries, " "), back, rec))
  t.ok(#retries >= 3, "mw said the engine is away and retried")
  -- backoff: the delays grow while away
  local grew = false
  for _, d in ipairs(retries) do
    local secs = d:match("^(%d+)ms$") and tonumber(d:match("^(%d+)ms$")) / 1000 or tonumber(d:match("^([%d.]+)s$"))
    if secs and secs > 0.1 then grew = true end
  end
  t.ok(grew, "the retry delay grew while away")
  t.ok(alive(h), "mw runs")
  local bad = task_failures(h.text())
  t.eq(#bad, 0, table.concat(bad, "\n"))
  t.eq(h.stop(), 0)
end)

---------------------------------------------------------------------------------------------

-- mw's resident memory, private dirty memory (kB) and open fds.
local function sample(pid)
  local st = fs.read("/proc/" .. pid .. "/status") or ""
  local sm = fs.read("/proc/" .. pid .. "/smaps_rollup") or ""
  local fds = fs.list("/proc/" .. pid .. "/fd") or {}
  return { rss = tonumber(st:match("VmRSS:%s*(%d+)")), dirty = tonumber(sm:match("Private_Dirty:%s*(%d+)")),
           fds = #fds, t = core.now() }
end

local function median(list, key)
  local v = {}
  for _, s in ipairs(list) do v[#v + 1] = s[key] end
  table.sort(v)
  return v[(#v + 1) // 2]
end

t.test(string.format("a component crash-looping for %ds: restarts follow the backoff; mw's memory and fds stay flat",
  LOOP_SECONDS), function()
  local file = E.stack("loop", [[
local policy = require "mw.policy"
local backoff = require "mw.backoff"
return { name = "NAME", components = {
  crash = { image = "IMAGE", command = { "sh", "-c", "sleep 0.3; exit 3" },
            restart = policy.on_failure { backoff = backoff.exponential { initial = "100ms", factor = 2, max = "1s" } } },
  steady = { image = "IMAGE", command = { "sh", "-c", "mkdir -p /w/debug && echo '{}' > /w/debug/vars && exec httpd -f -p 8089 -h /w" },
             -- watched, but what it shows is that nothing touches it: a window (5 s) no late
             -- answer under the crash loop's load reaches
             heartbeat = { interval = "1s", misses = 5, grace = "20s" } },
} }
]])
  local state = E.tmpdir()
  local h = E.mw({ "run", "--log-format", "json", "--state-dir", state, file })
  h.wait_event({ event = "failed", component = "crash" }, 60)
  local asan = (fs.read("/proc/" .. h.pid .. "/maps") or ""):find("libasan", 1, true) ~= nil
  local t0 = core.now()
  local warm = math.min(30, LOOP_SECONDS / 4)
  local samples = {}
  while core.now() - t0 < LOOP_SECONDS do
    local s = sample(h.pid)
    s.age = core.now() - t0
    samples[#samples + 1] = s
    t.ok(alive(h), "mw runs")
    core.sleep(2)
  end
  local evs = h.events()
  h.stop()
  -- the backoff: each failure's delay is the schedule's, and the restart came after it
  local fails, restarts = {}, {}
  for _, ev in ipairs(evs) do
    if ev.component == "crash" and ev.event == "failed" then fails[#fails + 1] = ev end
    if ev.component == "crash" and ev.event == "restarting" then restarts[#restarts + 1] = ev end
  end
  local want = { 0, 0.1, 0.2, 0.4, 0.8, 1, 1 }     -- the first restart at once (issue 17)
  for i = 1, math.min(#fails, 7) do t.eq(fails[i].delay, want[i], "delay " .. i) end
  for i = 8, #fails do t.eq(fails[i].delay, 1, "delay " .. i .. " at the cap") end
  local early, excess = 0, 0
  for i = 1, math.min(#fails, #restarts) do
    local gap = restarts[i].time - fails[i].time
    if gap < fails[i].delay - 0.02 then early = early + 1 end
    excess = excess + (gap - fails[i].delay)
  end
  t.eq(early, 0, "restarts that came before their delay")
  local n = math.min(#fails, #restarts)
  t.ok(n >= LOOP_SECONDS / 12, string.format("%d restarts in %ds", n, LOOP_SECONDS))
  for _, ev in ipairs(evs) do
    t.ok(not (ev.component == "steady" and (ev.event == "failed" or ev.event == "restarting")), "steady untouched")
  end
  -- memory and fds after the warm-up: the first and the last quarter, compared by medians
  local after = {}
  for _, s in ipairs(samples) do if s.age >= warm then after[#after + 1] = s end end
  local q = math.max(1, #after // 4)
  local first, last = {}, {}
  for i = 1, q do first[#first + 1] = after[i] end
  for i = #after - q + 1, #after do last[#last + 1] = after[i] end
  local rss0, rss1 = median(first, "rss"), median(last, "rss")
  local pd0, pd1 = median(first, "dirty"), median(last, "dirty")
  local fd0, fd1 = median(first, "fds"), median(last, "fds")
  local maxfd = 0
  for _, s in ipairs(after) do maxfd = math.max(maxfd, s.fds) end
  print(string.format("#   %d restarts in %ds (mean lateness %.0f ms); RSS %d -> %d kB, Private_Dirty %d -> %d kB, fds %d -> %d (max %d)",
    n, LOOP_SECONDS, n > 0 and excess / n * 1000 or 0, rss0, rss1, pd0, pd1, fd0, fd1, maxfd))
  local bound = 2048 + LOOP_SECONDS * 2      -- kB: 2 MB, plus a little for a long run's GC swings
  if asan then
    -- ASan keeps freed memory in quarantine (256 MB by default): RSS grows by design there
    print("#   (an ASan build: memory figures shown, not bounded)")
  else
    t.ok(rss1 - rss0 < bound, string.format("RSS grew %d kB (bound %d)", rss1 - rss0, bound))
    t.ok(pd1 - pd0 < bound, string.format("Private_Dirty grew %d kB (bound %d)", pd1 - pd0, bound))
  end
  t.ok(fd1 - fd0 <= 2 and maxfd - fd0 <= 6, string.format("fds %d -> %d, max %d", fd0, fd1, maxfd))
end)

os.exit(E.run(t))
