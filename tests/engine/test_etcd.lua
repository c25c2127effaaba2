-- One active mw per stack across hosts, coordinated on a real etcd (mw run --coord etcd://).
-- Each contender is a separate mw process with a state dir of its own (a separate host); etcd
-- runs on 127.0.0.1 ports of its own, one member or three, stopped after the cases.
local t = require "t"
local core = require "mw.core"
local X = require "etcdh"
local E = require "engine"
local P = require "faults.proxy"

local TTL = 3

local STACK = [[
return { name = "NAME", components = {
  web = { image = "IMAGE", heartbeat = { interval = "200ms", grace = "10s" },
          command = { "sh", "-c", "mkdir -p /w/debug && echo '{}' > /w/debug/vars && exec httpd -f -p 8089 -h /w" } },
} }
]]

if not X.available() then
  t.skip("etcd coordination", "etcd is not installed (make deps)")
  os.exit(E.run(t))
end

-- A contender: mw run --coord with a state dir of its own.
local function contender(cluster, file, opts)
  opts = opts or {}
  local args = { "run", "--log-format", "json", "--state-dir", E.tmpdir(), "--coord", cluster.url,
                 "--coord-ttl", tostring(opts.ttl or TTL) }
  if opts.force then args[#args + 1] = "--force" end
  args[#args + 1] = file
  if opts.proxy then return P.mw(E, opts.proxy, args) end
  return E.mw(args)
end

-- Active: its last "start" comes after its last step-down.
local function is_active(h)
  if h.closed then return false end
  local state = false
  for _, ev in ipairs(h.events()) do
    if ev.event == "start" then state = true elseif ev.event == "coord_lost" then state = false end
  end
  return state
end

local function actives(hs)
  local out = {}
  for i, h in ipairs(hs) do if is_active(h) then out[#out + 1] = i end end
  return out
end

local function wait_one_active(hs, timeout, except)
  local got
  t.wait_for(function()
    local act = actives(hs)
    if #act == 1 and act[1] ~= except then got = act[1] return true end
    return false
  end, timeout or 60, "one active mw")
  return got
end

local function count(h, name)
  local n = 0
  for _, ev in ipairs(h.events()) do if ev.event == name then n = n + 1 end end
  return n
end

-- The engine writes (not GET/HEAD) a proxy has forwarded so far.
local function writes(px)
  local n = 0
  for _, r in ipairs(px:requests()) do
    if r.method ~= "GET" and r.method ~= "HEAD" then n = n + 1 end
  end
  return n
end

local function web(stack)
  local list = E.containers(stack).web or {}
  t.eq(#list, 1, "one web container")
  return list[1], assert(E.engine():inspect(list[1].Id))
end

t.test("three contenders: one active, two waiting; kill -9 of the active: a successor within the TTL, nothing restarted", function()
  local cl = X.start(1)
  local file, stack = E.stack("e3", STACK)
  local hs = {}
  for i = 1, 3 do hs[i] = contender(cl, file) end
  local a = wait_one_active(hs)
  hs[a].wait_event({ event = "healthy", component = "web" }, 120)
  for i = 1, 3 do
    if i ~= a then hs[i].wait_event({ event = "waiting", pid = hs[a].pid }, 10) end
  end
  t.eq(#actives(hs), 1, "exactly one active")
  local before, info1 = web(stack)
  local t0 = core.now()
  hs[a].stop("KILL")
  local b = wait_one_active(hs, TTL + 20, a)
  local took = core.now() - t0
  print(string.format("#   a successor was active %.3f s after the kill -9 (TTL %d s)", took, TTL))
  t.ok(took < TTL + 10, "taken over within the TTL (and a generous margin)")
  hs[b].wait_event({ event = "adopted", component = "web" }, 60)
  local after, info2 = web(stack)
  t.eq(after.Id, before.Id, "the same container")
  t.eq(info2.State.StartedAt, info1.State.StartedAt, "not restarted")
  t.eq(#actives(hs), 1, "still exactly one active")
  -- mw status on a "host" with no state of its own asks etcd who is active
  local code, out = E.mw_sync({ "status", "--state-dir", E.tmpdir(), "--stack", stack, "--coord", cl.url })
  t.eq(code, 0, out)
  t.match(out, "active mw %(etcd election%): pid " .. hs[b].pid .. " on %S+ since ", "status names the leader")
  for i = 1, 3 do hs[i].stop() end
  cl:stop()
end)

-- A restart two seconds after a failure: a restart the frozen leader has scheduled comes due
-- while it is stopped (before the successor takes over, TTL = 3 s), so on SIGCONT it runs
-- before anything else can tell it that it lost. (Two, not one: the test must freeze the
-- leader between its "failed" line and that restart, and it reads the leader's log by polling.)
local SLOW_RESTART = [[
return { name = "NAME", components = {
  web = { image = "IMAGE", heartbeat = { interval = "200ms", grace = "10s" },
          restart = function() return "restart", "2s" end,
          command = { "sh", "-c", "mkdir -p /w/debug && echo '{}' > /w/debug/vars && exec httpd -f -p 8089 -h /w" } },
} }
]]

t.test("SIGSTOP of the active past its TTL: a successor takes over; SIGCONT: the old one steps down and writes nothing", function()
  local cl = X.start(1)
  local file, stack = E.stack("estop", SLOW_RESTART)
  local px = P.start { dir = E.tmpdir() }
  local ok, err = pcall(function()
    local a = contender(cl, file, { proxy = px })
    a.wait_event({ event = "healthy", component = "web" }, 120)
    local b = contender(cl, file)
    b.wait_event({ event = "waiting", pid = a.pid }, 10)
    local before = web(stack)
    -- a failure: the active one schedules its restart in 2 s, and is frozen before then
    local mark = #a.events()
    assert(E.engine():kill(before.Id, "KILL"))
    a.wait_event({ event = "failed", component = "web" }, 20, mark)
    core.kill(a.pid, "STOP")
    local t0 = core.now()
    b.wait_event({ event = "start" }, TTL + 20)
    print(string.format("#   the successor was active %.3f s after the SIGSTOP", core.now() - t0))
    b.wait_event({ event = "healthy", component = "web" }, 120)
    local w0 = writes(px)
    core.kill(a.pid, "CONT")
    a.wait_event({ event = "coord_lost" }, 20)
    -- back in line behind the successor
    a.wait_event({ event = "waiting", pid = b.pid }, 20)
    t.eq(writes(px), w0, "no engine write through the old leader's proxy after SIGCONT")
    local list = E.containers(stack).web or {}
    local running = 0
    for _, c in ipairs(list) do if c.State == "running" then running = running + 1 end end
    t.eq(running, 1, "one web container running")
    t.eq(count(a, "restarting") + count(b, "restarting"), 1, "restarted once (by the successor): no double restart")
    t.eq(#actives({ a, b }), 1, "exactly one active")
    t.ok(is_active(b), "the successor stays active")
    a.stop()
    b.stop()
  end)
  px:stop()
  cl:stop()
  if not ok then error(err, 0) end
end)

t.test("--force from another contender: it takes over (not the one waiting), the old one steps down, nothing restarted", function()
  local cl = X.start(1)
  local file, stack = E.stack("eforce", STACK)
  local a = contender(cl, file)
  a.wait_event({ event = "healthy", component = "web" }, 120)
  local w = contender(cl, file)
  w.wait_event({ event = "waiting", pid = a.pid }, 20)
  local before, info1 = web(stack)
  local t0 = core.now()
  local b = contender(cl, file, { force = true })
  b.wait_event({ event = "start" }, TTL + 20)
  print(string.format("#   the forcing contender was active %.3f s after it started", core.now() - t0))
  a.wait_event({ event = "coord_lost" }, 10)
  b.wait_event({ event = "adopted", component = "web" }, 60)
  a.wait_event({ event = "waiting", pid = b.pid }, 20)
  w.wait_event({ event = "waiting", pid = b.pid }, 20)
  local after, info2 = web(stack)
  t.eq(after.Id, before.Id, "the same container")
  t.eq(info2.State.StartedAt, info1.State.StartedAt, "not restarted")
  t.eq(count(w, "start"), 0, "the one that waited in line never became active")
  t.eq(#actives({ a, b, w }), 1, "exactly one active")
  a.stop()
  w.stop()
  b.stop()
  cl:stop()
end)

t.test("three etcd members, the raft leader killed: still exactly one active mw", function()
  local cl = X.start(3)
  local file, stack = E.stack("eraft", STACK)
  local hs = { contender(cl, file, { ttl = 3 }), contender(cl, file, { ttl = 3 }) }
  local a = wait_one_active(hs)
  hs[a].wait_event({ event = "healthy", component = "web" }, 120)
  local before = web(stack)
  local leader
  t.wait_for(function() leader = cl:leader() return leader ~= nil end, 10, "a raft leader")
  cl:stop_member(leader)
  -- watch for a few TTLs: never two active, one at the end
  local deadline = core.now() + 3 * 3
  local max = 0
  while core.now() < deadline do
    max = math.max(max, #actives(hs))
    core.sleep(0.05)
  end
  t.ok(max <= 1, "never two active")
  wait_one_active(hs, 20)
  t.eq(web(stack).Id, before.Id, "the same container")
  for _, h in ipairs(hs) do h.stop() end
  cl:stop()
end)

t.test("all etcd members stopped: containers untouched, one line; etcd back: supervision resumes", function()
  local cl = X.start(1)
  local file, stack = E.stack("edown", STACK)
  local hs = { contender(cl, file), contender(cl, file) }
  local a = wait_one_active(hs)
  hs[a].wait_event({ event = "healthy", component = "web" }, 120)
  local before, info1 = web(stack)
  cl:stop_member(1)
  hs[a].wait_event({ event = "coord_unreachable" }, 20)
  hs[a].wait_event({ event = "coord_lost" }, TTL + 20)
  t.eq(#actives(hs), 0, "no mw acts without a lease")
  local mid = web(stack)
  t.eq(mid.Id, before.Id, "containers untouched while etcd is away")
  t.eq(mid.State, "running")
  local starts = count(hs[1], "start") + count(hs[2], "start")
  cl:restart_members()
  t.wait_for(function() return count(hs[1], "start") + count(hs[2], "start") > starts end, TTL * 3 + 20,
    "an mw active again")
  local b = wait_one_active(hs, 20)
  hs[b].wait_event({ event = "coord_reachable" }, 10)
  -- the whole outage, with its many failed attempts, made one line in each
  t.eq(count(hs[a], "coord_unreachable"), 1, "one line about etcd from the active one")
  t.eq(count(hs[3 - a], "coord_unreachable"), 1, "one line about etcd from the waiting one")
  local after, info2 = web(stack)
  t.eq(after.Id, before.Id, "the same container")
  t.eq(info2.State.StartedAt, info1.State.StartedAt, "not restarted")
  for _, h in ipairs(hs) do h.stop() end
  cl:stop()
end)

t.test("etcd with authentication: the right password leads, a wrong one says so and waits", function()
  local cl = X.start(1)
  cl:enable_auth("root", "s3cret")
  local file, stack = E.stack("eauth", STACK)
  local bad = E.mw({ "run", "--log-format", "json", "--state-dir", E.tmpdir(), "--coord", cl.url,
                     "--coord-ttl", tostring(TTL), "--coord-user", "root:wrong", file })
  local ev = bad.wait_event({ event = "coord_unreachable" }, 20)
  t.match(ev.msg, "auth", "the refusal is named")
  local good = E.mw({ "run", "--log-format", "json", "--state-dir", E.tmpdir(), "--coord", cl.url,
                      "--coord-ttl", tostring(TTL), "--coord-user", "root", file }, { env = { "MW_COORD_PASSWORD=s3cret" } })
  good.wait_event({ event = "healthy", component = "web" }, 120)
  t.ok(not is_active(bad), "the one refused by etcd never acts")
  t.eq(#(E.containers(stack).web or {}), 1)
  bad.stop()
  good.stop()
  cl:stop()
end)

t.test("etcd over TLS with client certificates: --coord-ca/--coord-cert/--coord-key, or the ETCDCTL_* names", function()
  local cl = X.start(1, { tls = true })
  local file, stack = E.stack("etls", STACK)
  local a = E.mw({ "run", "--log-format", "json", "--state-dir", E.tmpdir(), "--coord", cl.url, "--coord-ttl", tostring(TTL),
                   "--coord-ca", cl.certs.ca, "--coord-cert", cl.certs.client_cert, "--coord-key", cl.certs.client_key, file })
  a.wait_event({ event = "healthy", component = "web" }, 120)
  local b = E.mw({ "run", "--log-format", "json", "--state-dir", E.tmpdir(), "--coord", cl.url, "--coord-ttl", tostring(TTL), file },
    { env = { "ETCDCTL_CACERT=" .. cl.certs.ca, "ETCDCTL_CERT=" .. cl.certs.client_cert, "ETCDCTL_KEY=" .. cl.certs.client_key } })
  b.wait_event({ event = "waiting", pid = a.pid }, 20)
  -- without a client certificate etcd refuses the TLS handshake: said, never active
  local c = E.mw({ "run", "--log-format", "json", "--state-dir", E.tmpdir(), "--coord", cl.url, "--coord-ttl", tostring(TTL),
                   "--coord-ca", cl.certs.ca, file })
  c.wait_event({ event = "coord_unreachable" }, 20)
  t.eq(#actives({ a, b, c }), 1, "exactly one active")
  a.stop()
  b.wait_event({ event = "start" }, TTL + 20)
  t.ok(not is_active(c), "the one without a certificate never acts")
  t.eq(#(E.containers(stack).web or {}), 1)
  b.stop()
  c.stop()
  cl:stop()
end)

os.exit(E.run(t))
