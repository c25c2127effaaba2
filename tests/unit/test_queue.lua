-- The coordination queue: order, hand-over, dead contenders, --force, modes, status listing.
-- In-process cases use several entries of one process (flock locks belong to the open file,
-- so they contend); the rest run real contenders (tests/lib/queue_child.lua).
local t = require "t"
local core = require "mw.core"
local fs = require "mw.fs"
local proc = require "mw.proc"
local queue = require "mw.queue"
local tmp = require "tmp"
local runner = require "run"     -- `run` is a case's local below

local base_stats = core.stats()
local PRIVATE, FILE = tonumber("700", 8), tonumber("600", 8)

-- every case gets its own directory under one root whose name has spaces
local root = tmp.dir(" queue tests")
local ncase = 0
local function case_dir(extra)
  ncase = ncase + 1
  local d = root .. "/case " .. ncase .. (extra or "")
  assert(fs.mkdirp(d))
  return d
end

local ENV = { "MW_LUA_PATH=" .. (os.getenv("MW_LUA_PATH") or "."), "PATH=" .. (os.getenv("PATH") or "/usr/bin:/bin") }

-- Children of one case; the guard kills and reaps whatever is left, even when the case fails.
local function children()
  local set = { list = {} }
  function set.start(dir, stack, out, force)
    local p = assert(proc.spawn {
      args = { "./mw", "script", "tests/lib/queue_child.lua", dir, stack, out, force },
      env = ENV, out = out .. ".log",
    })
    set.list[#set.list + 1] = p
    return p
  end
  return set, setmetatable({}, { __close = function()
    for _, p in ipairs(set.list) do
      p:kill("KILL")
      p:wait(5)
      p:close()
    end
  end })
end

-- the child's report as { {verb, pid, ...}, ... }
local function report(out)
  local got = {}
  for line in (fs.read(out) or ""):gmatch("[^\n]+") do
    local words = {}
    for w in line:gmatch("%S+") do words[#words + 1] = math.tointeger(tonumber(w)) or w end
    got[#got + 1] = words
  end
  return got
end

local function lines_of(out, verb)
  local r = {}
  for _, l in ipairs(report(out)) do if l[1] == verb then r[#r + 1] = l end end
  return r
end

local function has(out, verb, pid)
  for _, l in ipairs(report(out)) do if l[1] == verb and l[2] == pid then return l end end
  return nil
end

local function dead_pid()
  local p = assert(proc.spawn { args = { "/bin/sh", "-c", "exit 0" } })
  local pid = p:pid()
  p:wait(5)
  p:close()
  return pid
end

local function names_in(qdir)
  local r = {}
  for _, n in ipairs(fs.list(qdir) or {}) do if n:match("^%d+%-%d+$") then r[#r + 1] = n end end
  table.sort(r)
  return r
end

t.test("default_dir: XDG_RUNTIME_DIR, else /run/mw for root, else /tmp/mw-<uid>", function()
  local d = case_dir()
  local script = d .. "/show.lua"
  assert(fs.write_atomic(script, 'print(require("mw.queue").default_dir())\n'))
  local function run(env)
    local code, out = runner.mw({ "script", script }, { bin = "./mw", env = env, inherit = {}, timeout = 10, merge = true })
    t.eq(code, 0)
    return (out:gsub("\n$", ""))
  end
  t.eq(run { ENV[1], ENV[2], "XDG_RUNTIME_DIR=/run/user/1234" }, "/run/user/1234/mw")
  local uid = tonumber((fs.read("/proc/self/status") or ""):match("\nUid:%s+%d+%s+(%d+)"))
  t.eq(run { ENV[1], ENV[2] }, uid == 0 and "/run/mw" or ("/tmp/mw-" .. uid))
end)

t.test("enter: private directories and file, ordered names, first in line is active", function()
  local dir = case_dir() .. "/state"
  local q1 = assert(queue.enter { dir = dir, stack = "web" })
  local q2 = assert(queue.enter { dir = dir, stack = "web" })
  for _, d in ipairs { dir, dir .. "/web", dir .. "/web/queue" } do
    t.eq(fs.stat(d).mode, PRIVATE, d)
  end
  t.eq(fs.stat(q1.path).mode, FILE)
  t.match(q1.name, "^%d%d%d%d%d%d%d%d%d%d%d%d%d%d%d%d%d%d%d%d%-" .. core.pid() .. "$")
  t.ok(q1.name < q2.name, "second entry sorts after the first")
  local info = require("cjson").decode(fs.read(q1.path))
  t.eq(info.pid, core.pid()); t.eq(info.host, core.hostname())
  t.ok(math.abs(info.since - core.time()) < 5, "since is the start time")
  t.eq(q1:wait(), true)
  q1:leave(); q2:leave()
  t.same(names_in(dir .. "/web/queue"), {})
end)

t.test("enter: misuse raises", function()
  t.ok(not pcall(queue.enter, { dir = "/tmp", stack = "../x" }), "a stack with a slash")
  t.ok(not pcall(queue.enter, { dir = "", stack = "x" }), "an empty dir")
  t.ok(not pcall(queue.enter), "no options")
end)

t.test("wait: the second waits for the first without polling and hears whom it waits for", function()
  local dir = case_dir() .. "/state"
  local q1 = assert(queue.enter { dir = dir, stack = "s" })
  local q2 = assert(queue.enter { dir = dir, stack = "s" })
  local seen = {}
  local done
  local waiter = core.spawn(function()
    done = { q2:wait(function(i) seen[#seen + 1] = i end) }
  end, "second")
  t.wait_for(function() return #seen == 1 end, 2, "on_wait")
  t.eq(seen[1].pid, core.pid()); t.eq(seen[1].ahead, 1); t.eq(seen[1].host, core.hostname())
  t.eq(seen[1].name, q1.name)
  t.ok(math.abs(seen[1].since - q1.since) < 0.01, "since")
  core.sleep(0.05)
  t.eq(done, nil, "still waiting")
  q1:leave()
  t.wait_for(function() return done end, 1, "hand-over")
  t.same(done, { true })
  core.join(waiter)
  q2:leave()
end)

t.test("wait: re-targets when a contender in the middle goes and skips dead files", function()
  local dir = case_dir() .. "/state"
  local q1 = assert(queue.enter { dir = dir, stack = "s" })
  local q2 = assert(queue.enter { dir = dir, stack = "s" })
  local q3 = assert(queue.enter { dir = dir, stack = "s" })
  local seen, done = {}, nil
  core.spawn(function() done = { q3:wait(function(i) seen[#seen + 1] = i end) } end, "third")
  t.wait_for(function() return #seen == 1 end, 2, "first on_wait")
  t.eq(seen[1].name, q2.name); t.eq(seen[1].ahead, 2)
  q2:leave()
  t.wait_for(function() return #seen == 2 end, 1, "new predecessor")
  t.eq(seen[2].name, q1.name); t.eq(seen[2].ahead, 1)
  -- a crash, as far as the file system can tell: the lock goes, the file stays
  q1.lock:close()
  if q1.server then q1.server:close() end
  for c in pairs(q1.conns) do c:close() end
  t.wait_for(function() return done end, 1, "dead predecessor skipped")
  t.same(done, { true })
  t.eq(fs.stat(q1.path), nil, "dead file removed")
  q1:leave(); q3:leave()
end)

t.test("leave twice is fine; wait and replaced after leave say so", function()
  local dir = case_dir() .. "/state"
  local q = assert(queue.enter { dir = dir, stack = "s" })
  t.eq(q:leave(), true)
  t.eq(q:leave(), true)
  t.same({ q:wait() }, { nil, "left" })
  t.same({ q:replaced() }, { nil, "left" })
  t.match(tostring(q), "left")
  do
    local q2 <close> = assert(queue.enter { dir = dir, stack = "s" })
    t.eq(#names_in(dir .. "/s/queue"), 1, q2.name)
  end
  t.same(names_in(dir .. "/s/queue"), {}, "<close> leaves")
end)

t.test("force in one process: files ahead go, their owners see replaced", function()
  local dir = case_dir() .. "/state"
  local q1 = assert(queue.enter { dir = dir, stack = "s" })
  local q2 = assert(queue.enter { dir = dir, stack = "s" })
  t.eq(q1:wait(), true)
  local r1, w2
  core.spawn(function() r1 = { q1:replaced() } end, "active")
  core.spawn(function() w2 = { q2:wait() } end, "waiting")
  core.sleep(0.02)
  local t0 = core.now()
  local q3 = assert(queue.enter { dir = dir, stack = "s", force = true })
  t.wait_for(function() return r1 and w2 end, 10, "replaced")
  print(string.format("#   replaced after %.3f s", core.now() - t0))
  t.same(r1, { "replaced" })
  t.same(w2, { nil, "replaced" })
  t.eq(q3:wait(), true)
  t.same(names_in(dir .. "/s/queue"), { q3.name })
  q1:leave(); q2:leave(); q3:leave()
end)

t.test("a stale wait file of a dead pid is cleaned and does not block; list says dead", function()
  local dir = case_dir() .. "/state"
  local qdir = dir .. "/s/queue"
  assert(fs.mkdirp(qdir))
  local pid = dead_pid()
  local stale = string.format("%020d-%d", 7, pid)
  assert(fs.write_atomic(qdir .. "/" .. stale, string.format('{"pid":%d,"host":"h","since":1}\n', pid)))
  local before = queue.list(dir, "s")
  t.eq(#before, 1)
  t.eq(before[1].pid, pid); t.eq(before[1].alive, false); t.eq(before[1].host, "h"); t.eq(before[1].since, 1)
  local q = assert(queue.enter { dir = dir, stack = "s" })
  t.ok(q.name > stale, "numbers continue past files in the directory")
  local l = queue.list(dir, "s")
  t.eq(#l, 2); t.eq(l[1].alive, false); t.eq(l[2].alive, true); t.eq(l[2].pid, core.pid())
  local t0 = core.now()
  t.eq(q:wait(), true)
  -- a stale file is recognised by its lock, not waited out (the fallback re-test is 5 s and more)
  t.ok(core.now() - t0 < 3, "did not wait")
  t.eq(fs.stat(qdir .. "/" .. stale), nil, "stale file removed")
  t.eq(#queue.list(dir, "s"), 1)
  q:leave()
  t.same(queue.list(dir, "s"), {})
  t.same(queue.list(dir, "nothing-here"), {}, "no queue yet")
end)

t.test("5 contenders at once: one active, the rest in creation order, each takes over in turn", function()
  local dir = case_dir() .. "/state dir"
  local out = dir .. " report"
  local kids, _ <close> = children()
  for _ = 1, 5 do kids.start(dir, "s", out) end
  t.wait_for(function() return #lines_of(out, "entered") == 5 and #lines_of(out, "active") == 1 end, 10, "5 entered")
  local order = {}
  for _, e in ipairs(queue.list(dir, "s")) do order[#order + 1] = e.pid; t.ok(e.alive) end
  t.eq(#order, 5)
  t.eq(lines_of(out, "active")[1][2], order[1], "the first in line is active")
  -- each waiter named its immediate predecessor and the number ahead
  t.wait_for(function() return #lines_of(out, "waiting") >= 4 end, 5, "waiting lines")
  for i = 2, 5 do
    local w
    for _, l in ipairs(lines_of(out, "waiting")) do if l[2] == order[i] then w = w or l end end
    t.ok(w, "waiting line of " .. i)
    t.eq(w[3], order[i - 1], "predecessor of " .. i)
    t.eq(w[4], i - 1, "ahead of " .. i)
  end
  for i = 1, 5 do
    t.eq(#lines_of(out, "active"), i, "exactly one more active")
    core.kill(order[i], "TERM")
    t.wait_for(function() return has(out, "left", order[i]) end, 5, "left " .. i)
    if i < 5 then t.wait_for(function() return has(out, "active", order[i + 1]) end, 1, "active " .. (i + 1)) end
  end
  local act = {}
  for _, l in ipairs(lines_of(out, "active")) do act[#act + 1] = l[2] end
  t.same(act, order, "actives in creation order")
  for _, p in ipairs(kids.list) do t.eq(p:wait(5), 0) end
  t.same(names_in(dir .. "/s/queue"), {})
end)

local function kill9_case(dir)
  local out = dir .. ".report"
  local kids, _ <close> = children()
  local a = kids.start(dir, "s", out)
  t.wait_for(function() return has(out, "active", a:pid()) end, 10, "first active")
  local b = kids.start(dir, "s", out)
  t.wait_for(function() return has(out, "waiting", b:pid()) end, 10, "second waiting")
  -- let the waiter settle: a fallback re-test starts fast and backs off
  core.sleep(0.5)
  a:kill("KILL")
  local t0 = core.now()
  t.wait_for(function() return has(out, "active", b:pid()) end, 10, "next active")
  print(string.format("#   next active %.3f s after the kill", core.now() - t0))
  t.eq(#names_in(dir .. "/s/queue"), 1, "the dead file is gone")
end

t.test("kill -9 of the active one: the next becomes active", function()
  kill9_case(case_dir() .. "/state")
end)

t.test("kill -9 with a state dir too long for a beacon socket: the next still becomes active", function()
  local dir = case_dir("/" .. string.rep("long path ", 8)) .. "/state"
  t.ok(#(dir .. "/s/queue/." .. string.format("%020d-%d", 1, 1234567) .. ".sock") > 107, "path long enough")
  kill9_case(dir)
end)

t.test("force: a newcomer removes the files ahead, the active one sees replaced", function()
  local dir = case_dir() .. "/state"
  local out = dir .. ".report"
  local kids, _ <close> = children()
  local a = kids.start(dir, "s", out)
  t.wait_for(function() return has(out, "active", a:pid()) end, 10, "first active")
  local b = kids.start(dir, "s", out)
  t.wait_for(function() return has(out, "waiting", b:pid()) end, 10, "second waiting")
  local c = kids.start(dir, "s", out, "force")
  t.wait_for(function() return has(out, "entered", c:pid()) end, 10, "forcer entered")
  local t0 = core.now()
  t.wait_for(function() return has(out, "replaced", a:pid()) end, 10, "active replaced")
  print(string.format("#   replaced %.3f s after the forcer entered", core.now() - t0))
  t.wait_for(function() return has(out, "replaced", b:pid()) end, 10, "waiting one replaced")
  t.wait_for(function() return has(out, "active", c:pid()) end, 1, "forcer active")
  t.eq(a:wait(5), 0); t.eq(b:wait(5), 0)
  t.eq(#lines_of(out, "active"), 2)
end)

t.test("SIGTERM while waiting removes the file; the line closes up", function()
  local dir = case_dir() .. "/state"
  local out = dir .. ".report"
  local kids, _ <close> = children()
  local a = kids.start(dir, "s", out)
  t.wait_for(function() return has(out, "active", a:pid()) end, 10, "first active")
  local b = kids.start(dir, "s", out)
  t.wait_for(function() return has(out, "waiting", b:pid()) end, 10, "b waiting")
  local c = kids.start(dir, "s", out)
  t.wait_for(function() return has(out, "waiting", c:pid()) end, 10, "c waiting")
  t.eq(has(out, "waiting", c:pid())[3], b:pid())
  b:kill("TERM")
  t.wait_for(function() return has(out, "quit", b:pid()) end, 5, "b quit")
  t.eq(b:wait(5), 0)
  -- c now waits on a
  t.wait_for(function()
    for _, l in ipairs(lines_of(out, "waiting")) do if l[2] == c:pid() and l[3] == a:pid() then return true end end
  end, 1, "c re-targets a")
  t.eq(#queue.list(dir, "s"), 2)
  a:kill("TERM")
  t.wait_for(function() return has(out, "active", c:pid()) end, 1, "c active")
end)

t.test("after all that: no open handle, no leaked reference, temp dirs removed", function()
  local last
  local ok = pcall(t.wait_for, function()
    collectgarbage(); collectgarbage()
    last = core.stats()
    return last.handles == 0 and last.anchored == base_stats.anchored and last.tasks == 1
  end, 3)
  local cjson = require "cjson"
  t.ok(ok, "still open or anchored: " .. cjson.encode(last) .. ", at start: " .. cjson.encode(base_stats))
end)

os.exit(t.run())
