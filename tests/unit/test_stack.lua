-- Unit tests for the stack loader and its sandbox: good files normalize, bad files fail in one line.
local t = require "t"
local stack = require "mw.stack"
local sandbox = require "mw.sandbox"
local policy = require "mw.policy"
local backoff = require "mw.backoff"

-- Tests run from the repository root (./mw script tests/unit/test_stack.lua).
local ROOT = os.getenv("PWD") or "."

local function ls(dir, pattern)
  local ok, fs = pcall(require, "mw.fs")
  local names
  if ok and type(fs) == "table" and fs.list then
    names = assert(fs.list(dir))
  else
    names = {}
    local p = assert(io.popen("ls -1 '" .. dir .. "'"))
    for l in p:lines() do names[#names + 1] = l end
    p:close()
  end
  local out = {}
  for _, n in ipairs(names) do
    if n:find(pattern) then out[#out + 1] = dir .. "/" .. n end
  end
  table.sort(out)
  return out
end

local function read(path)
  local f = assert(io.open(path, "rb"))
  local s = f:read("a")
  f:close()
  return s
end

local function load_ok(path, opts)
  local s, err = stack.load(path, opts)
  if not s then error("loading " .. path .. ": " .. tostring(err), 2) end
  return s
end

-- good files ------------------------------------------------------------------------------

local GOOD = ls("tests/good", "%.lua$")
for _, d in ipairs { "tests/good/full" } do GOOD[#GOOD + 1] = d .. "/stack.lua" end

t.test("every good stack file loads", function()
  t.ok(#GOOD >= 4, "good files found")
  for _, f in ipairs(GOOD) do
    local s = load_ok(f)
    t.ok(#s.order > 0)
    local plan = stack.plan(s)
    -- and one for the components left out by their profiles, when there are any
    t.ok(select(2, plan:gsub("\n", "")) == #s.order + (next(s.excluded) and 1 or 0),
      "one line per component plus a header")
  end
end)

t.test("minimal stack normalizes with every default", function()
  local s = load_ok("tests/good/minimal.lua")
  t.eq(s.name, "good", "named after its directory")
  t.eq(s.file, ROOT .. "/tests/good/minimal.lua")
  t.eq(s.dir, ROOT .. "/tests/good")
  t.same(s.order, { "web" })
  t.same(s.required, {})
  local web = s.components.web
  t.eq(web.restart, policy.default)
  web.restart = nil
  t.same(web, {
    name = "web", image = "nginx:1.25", env = {}, depends_on = {}, heartbeat = false,
    ports = {}, volumes = {}, secrets = {}, configs = {}, scale = 1, labels = {}, extra_hosts = {},
    stop_grace = 10, init = false, hold_network = true, read_only = false, cap_add = {}, cap_drop = {},
    ulimits = {}, networks = {}, privileged = false, devices = {}, sysctls = {}, dns = {},
    dns_search = {}, dns_opt = {}, security_opt = {}, group_add = {}, pull = "missing",
    logging = { driver = "json-file", options = { ["max-size"] = "10m", ["max-file"] = "3" } },
    env_file = {}, job = false, profiles = {},
  })
end)

t.test("start order: dependencies first, ties by name", function()
  local s = load_ok("tests/good/deps.lua")
  t.same(s.order, { "cache", "db", "batch", "queue", "api", "web" })
  local c = s.components
  t.same(c.web.depends_on, { api = "started", cache = "started" })
  t.same(c.api.depends_on, { db = "healthy", queue = "healthy" })
  t.same(c.batch.depends_on, { db = "started" })
  t.same(c.api.heartbeat, { kind = "http", port = 8089, path = "/debug/vars", interval = 0.5,
                            timeout = 1, misses = 3, grace = 10 })
  t.eq(c.api.env.INTROSPECTION_PORT, "8089", "seed components find their port")
  t.same(c.db.heartbeat, { kind = "tcp", port = 5432, interval = 0.5, timeout = 1, misses = 3, grace = 10 })
  t.same(c.queue.heartbeat.exec, { "queue-ctl", "ping", "--quiet" })
  t.eq(c.queue.heartbeat.kind, "exec")
  t.eq(c.queue.env.INTROSPECTION_PORT, nil, "only HTTP heartbeats get the port")
  t.eq(c.web.restart.kind, "always")
  t.eq(c.cache.restart.kind, "never")
  t.eq(c.batch.restart.kind, "on_failure")
end)

t.test("env values and command words", function()
  local s = load_ok("tests/good/env-and-commands.lua")
  local app, worker = s.components.app, s.components.worker
  t.same(app.env, { LOG_LEVEL = "debug", PORT = "8080", RATIO = "0.25", VERBOSE = "true", EMPTY = "" })
  t.same(app.command, { "serve", "--name", "my app", "--flag=a b", "plain word" })
  t.same(app.entrypoint, { "/bin/tini", "--" })
  t.same(worker.env, { MODE = "batch", URL = "http://x/?a=b" })
  t.same(worker.command, { "work", "3", "--fast" })
end)

t.test("full stack: every field normalized", function()
  local s = load_ok("tests/good/full/stack.lua")
  local dir = ROOT .. "/tests/good/full"
  t.eq(s.name, "full")
  t.same(s.required, { dir .. "/helpers.lua" }, "helper recorded once")
  t.same(s.order, { "cache", "db", "source", "ingestion", "proxy", "steady", "worker" })
  local c = s.components

  t.eq(c.source.image, "source:latest")
  t.eq(c.source.heartbeat, false)

  local ing = c.ingestion
  t.same(ing.build, { context = dir .. "/app", dockerfile = dir .. "/app/Dockerfile",
                      args = { VERSION = "2", DEBUG = "false" }, target = "final" })
  t.eq(ing.image, nil)
  t.same(ing.command, { "/bin/ingest" })
  t.same(ing.env, { INGESTION_PORT = "8080", METRICS_HOST = "source", INTROSPECTION_PORT = "8089" })
  t.same(ing.depends_on, { source = "started" })
  t.eq(type(ing.heartbeat.check), "function")
  t.eq(ing.heartbeat.interval, 0.5)
  t.eq(ing.restart.kind, "on_failure")
  t.eq(ing.restart.reset_after, 30)
  t.same(ing.restart.limit, { restarts = 5, within = 60 })
  t.eq(ing.restart["then"], "give_up")
  t.eq(ing.restart.backoff.jitter, 0.1)

  local db = c.db
  t.same(db.heartbeat, { kind = "exec", exec = { "pg_isready", "-q" }, interval = 2, timeout = 1,
                         misses = 5, grace = 60 })
  t.same(db.volumes, {
    { type = "volume", name = "pgdata", target = "/var/lib/postgresql/data", read_only = false },
    { type = "tmpfs", target = "/run/postgresql", size = 16 * 1024 * 1024 },
  })
  t.same(db.secrets, { { name = "db_password", source = dir .. "/db_password.txt",
                         target = "/run/secrets/db_password" } })
  t.same(db.ports, { { ip = "127.0.0.1", host = 5432, container = 5432, proto = "tcp" } })
  t.eq(db.restart.kind, "always")
  t.eq(db.restart["then"], "dependents")
  t.eq(db.restart.backoff.kind, "fibonacci")
  t.eq(db.memory, 512 * 1024 * 1024)
  t.eq(db.shm_size, 128 * 1024 * 1024)
  t.eq(db.cpus, 1.5)
  t.same(db.ulimits, { nofile = { soft = 1024, hard = 4096 }, nproc = { soft = 512, hard = 512 } })
  t.eq(db.stop_signal, "SIGINT")
  t.eq(db.stop_grace, 30)

  local cache = c.cache
  t.eq(cache.heartbeat.kind, "tcp")
  t.eq(cache.restart["then"], "stack")
  t.eq(cache.restart.backoff.kind, "decorrelated")
  t.eq(cache.restart.backoff.seed, 42)
  t.same(cache.volumes, { { type = "volume", name = "cachedata", target = "/data", read_only = false } })

  local proxy = c.proxy
  t.eq(proxy.build.dockerfile, dir .. "/app/Dockerfile.dev")
  t.same(proxy.build.args, {})
  t.same(proxy.entrypoint, { "/bin/proxy", "--config", "/etc/proxy.conf" })
  t.same(proxy.depends_on, { ingestion = "healthy", cache = "healthy" })
  t.same(proxy.ports, {
    { ip = "0.0.0.0", container = 8080, proto = "tcp" },
    { ip = "0.0.0.0", host = 8443, container = 443, proto = "tcp" },
    { ip = "0.0.0.0", host = 53, container = 53, proto = "udp" },
    { ip = "0.0.0.0", host = 9000, container = 9000, proto = "tcp" },
  })
  t.same(proxy.volumes, {
    { type = "bind", source = dir .. "/conf/app.conf", target = "/etc/proxy.conf", read_only = true },
    { type = "bind", source = dir .. "/conf", target = "/etc/conf.d", read_only = false },
  })
  t.eq(proxy.restart.kind, "never")
  t.eq(proxy.working_dir, "/srv")
  t.eq(proxy.user, "1000:1000")
  t.same(proxy.labels, { ["com.example.team"] = "infra", tier = "1" })
  t.eq(proxy.hostname, "proxy.local")
  t.same(proxy.extra_hosts, { "gateway:host-gateway", "legacy.internal:10.1.2.3" })
  t.eq(proxy.init, true)
  t.eq(proxy.read_only, true)
  t.same(proxy.cap_add, { "NET_BIND_SERVICE" })
  t.same(proxy.cap_drop, { "ALL" })
  t.same(proxy.networks, { "frontend", "monitoring" })
  t.eq(proxy.heartbeat, false)

  local worker = c.worker
  t.eq(worker.scale, 3)
  t.eq(type(worker.restart), "function")
  t.eq(worker.autoscale.min, 1); t.eq(worker.autoscale.max, 5); t.eq(worker.autoscale.every, 10)
  t.eq(worker.autoscale.decide { desired = 4 }, 4)
  local action, delay = worker.restart({ reason = "exited", history = {} })
  t.eq(action, "restart"); t.eq(delay, 0.25)
  t.eq(c.steady.restart.backoff.kind, "constant")
end)

t.test("plan: start order, conditions, policies, secrets by name only", function()
  local s = load_ok("tests/good/full/stack.lua")
  local plan = stack.plan(s)
  local lines = {}
  for l in plan:gmatch("[^\n]+") do lines[#lines + 1] = l end
  t.match(lines[1], "^stack full ")
  t.match(lines[2], "^ 1%. cache: image redis:7")
  t.match(plan, "proxy: build %./app; after cache %(healthy%), ingestion %(healthy%)")
  t.match(plan, "db: .*secrets db_password;")
  t.match(plan, "ingestion: .*restart on_failure, first restart at once, then exponential%(200ms x2, max 30s, jitter 0%.1%), " ..
    "reset after 30s, at most 5 restarts in 1m then give up")
  t.match(plan, "heartbeat tcp :6379 every 500ms")
  t.ok(not plan:find("not%-a%-real%-password"), "secret content never shown")
  t.ok(not plan:find("db_password%.txt"), "not even the secret's file")
end)

t.test("loading is pure: twice gives the same result", function()
  local a = load_ok("tests/good/deps.lua")
  local b = load_ok("tests/good/deps.lua")
  for name, c in pairs(a.components) do
    local x, y = {}, {}
    for k, v in pairs(c) do if k ~= "restart" then x[k] = v end end
    for k, v in pairs(b.components[name]) do if k ~= "restart" then y[k] = v end end
    t.same(x, y, name)
    t.eq(tostring(c.restart), tostring(b.components[name].restart))
  end
end)

t.test("opts.source and opts.cwd", function()
  local src = 'return { components = { a = { image = "x", volumes = { "./conf:/c" } } } }'
  local s = load_ok("stack.lua", { source = src, cwd = ROOT .. "/tests/good/full" })
  t.eq(s.name, "full")
  t.eq(s.components.a.volumes[1].source, ROOT .. "/tests/good/full/conf")
  local _, err = stack.load("nope/stack.lua")
  t.match(err, "^nope/stack%.lua: ")
  _, err = stack.load("tests/good")
  t.match(err, "is a directory")
end)

t.test("line numbers: key in a comment, component defined in a local", function()
  local src = table.concat({
    "-- web = { heartbeet = true } is what we had before",   -- 1
    "local web = {",                                          -- 2
    "  image = 'nginx',",                                     -- 3
    "  heartbeet = true,",                                    -- 4
    "}",                                                      -- 5
    "return { components = { web = web } }",                  -- 6
  }, "\n")
  local _, err = stack.load("inline.lua", { source = src, cwd = ROOT .. "/tests/good" })
  t.eq(err, "inline.lua:4: component 'web': unknown field 'heartbeet' (did you mean 'heartbeat'?)")
  -- the field of another component is not taken for this one
  src = table.concat({
    "return { components = {",                  -- 1
    "  a = { image = 'x' },",                   -- 2
    "  b = { image = 'y', ports = { 80 } },",   -- 3
    "  c = { image = 'z', scale = 'two' },",    -- 4
    "} }",
  }, "\n")
  _, err = stack.load("inline.lua", { source = src, cwd = ROOT .. "/tests/good" })
  t.eq(err, "inline.lua:4: component 'c': field 'scale': must be a whole number, got string")
  -- a field that is not in the text: the component's line
  src = "local function mk() return { image = 'x', memory = 'huge' } end\nreturn { components = {\n  a = mk(),\n} }"
  _, err = stack.load("inline.lua", { source = src, cwd = ROOT .. "/tests/good" })
  t.match(err, "^inline%.lua:3: component 'a': field 'memory': bad size")
end)

t.test("a secret is an env value only: elsewhere one line naming the field, never the value", function()
  local function load(fields)
    return stack.load("inline.lua", { cwd = ROOT .. "/tests/good", source =
      "local secret = require 'mw.secret'\nreturn { components = { a = { " .. fields .. " } } }" })
  end
  local s = assert(load("image = 'x', env = { A = secret 'hunter2', B = 'plain' }"))
  local secret = require "mw.secret"
  t.ok(secret.is(s.components.a.env.A), "an env value stays a secret")
  t.eq(secret.reveal(s.components.a.env.A), "hunter2")
  for field, where in pairs {
    ["build = { context = '.', dockerfile = 'minimal.lua', args = { K = secret 'hunter2' } }"] = "build.args.K",
    ["labels = { k = secret 'hunter2' }"] = "labels.k",
    ["command = { 'run', secret 'hunter2' }"] = "command[2]",
    ["entrypoint = secret 'hunter2'"] = "entrypoint",
    ["hostname = secret 'hunter2'"] = "hostname",
    ["user = secret 'hunter2'"] = "user",
    ["working_dir = secret '/hunter2'"] = "working_dir",
    ["extra_hosts = { db = secret '10.0.0.1' }"] = "extra_hosts.db",
    ["heartbeat = { path = secret '/hunter2' }"] = "heartbeat.path",
    ["ports = { secret '8080:80' }"] = "ports[1]",
    ["ulimits = secret 'hunter2'"] = "ulimits",
    ["env = { secret 'A=hunter2' }"] = "env[1]",
  } do
    local ok, err = load(field:find("^build") and field or ("image = 'x', " .. field))
    t.eq(ok, nil, field)
    t.eq(err:match("field '([^']+)'"), where, err)
    t.match(err, "a secret is accepted only as an env value", field)
    t.ok(not err:find("hunter2") and not err:find("10.0.0.1", 1, true), "the value is not shown: " .. err)
  end
end)

t.test("env and extra_hosts: a map, a list of strings or both; a bad list item names its index", function()
  local function load(fields)
    return stack.load("inline.lua", { cwd = ROOT .. "/tests/good", source =
      "return { components = { a = { image = 'x', " .. fields .. " } } }" })
  end
  local s = assert(load("env = { 'A=1', 'B=x=y', C = 3 }, extra_hosts = { 'gw:host-gateway', 'v6:::1', db = '10.0.0.2' }"))
  local c = s.components.a
  t.same(c.env, { A = "1", B = "x=y", C = "3" })
  table.sort(c.extra_hosts)
  t.same(c.extra_hosts, { "db:10.0.0.2", "gw:host-gateway", "v6:::1" })
  for fields, want in pairs {
    ["env = { 'A=1', 'nope' }"] = "field 'env%[2%]': must look like \"NAME=value\", got \"nope\"",
    ["env = { 7 }"] = "field 'env%[1%]': .*a string \"NAME=value\" %(or use NAME = value%)",
    ["env = 'A=1'"] = "field 'env': .*a table of NAME = value",
    ["env = { 'A=1', A = 2 }"] = "variable 'A' is set twice",
    ["extra_hosts = { 'nope' }"] = "field 'extra_hosts%[1%]': must look like \"host:ip\", got \"nope\"",
    ["extra_hosts = { true }"] = "field 'extra_hosts%[1%]': .*a string \"host:ip\"",
    ["extra_hosts = 'gw:1.2.3.4'"] = "field 'extra_hosts': .*a table of host = \"ip\"",
    ["extra_hosts = { 'db:999.1.1.1' }"] = "field 'extra_hosts%[1%]': bad IP address",
  } do
    local ok, err = load(fields)
    t.eq(ok, nil, fields)
    t.match(err, want, fields)
  end
end)

-- bad files -------------------------------------------------------------------------------

local BAD = ls("tests/bad", "^%d+%-.*%.lua$")

t.test("the bad corpus is big enough", function()
  t.ok(#BAD >= 40, "at least 40 bad files, found " .. #BAD)
end)

for _, f in ipairs(BAD) do
  t.test("bad: " .. f:match("[^/]+$"), function()
    local first = read(f):match("^[^\n]*")
    local pat = first:match("^%-%- expect: (.-)%s*$")
    t.ok(pat, "first line has -- expect: <pattern>")
    local s, err = stack.load(f)
    t.eq(s, nil, "must fail")
    t.eq(type(err), "string")
    t.ok(not err:find("[\r\n]"), "one line: " .. err)
    t.ok(#err <= 600, "short message (" .. #err .. " bytes)")
    t.ok(not err:find("traceback"), "no traceback")
    t.ok(not err:find("hunter2"), "secret content never appears")
    t.match(err, pat)
    -- the message names the file it is about
    t.ok(err:find(f:match("[^/]+$"), 1, true) or err:find("helpers_", 1, true), "names the file: " .. err)
  end)
end

t.test("loading the bad corpus left the stdlib unchanged", function()
  t.eq(type(policy.default), "table")
  t.ok(policy.is(policy.default))
  t.eq(tostring(policy.default), "on_failure, first restart at once, then exponential(100ms x2, max 30s), reset after 10s")
  local f = io.open("/tmp/mw-sandbox-escaped", "rb")
  t.ok(not f, "os.execute did not run")
  if f then f:close() end
end)

-- sandbox ---------------------------------------------------------------------------------

local DIR = ROOT .. "/tests/good/full"

local function run(env, code)
  local fn = assert(load(code, "=sandboxed", "t", env))
  return pcall(fn)
end

t.test("sandbox: no way out through globals", function()
  local env = sandbox.env(DIR)
  local escapes = {
    { "return io.open('/etc/passwd')", "'io' is not available" },
    { "return os.execute('true')", "os%.execute is not available" },
    { "return os.remove('/tmp/x')", "os%.remove is not available" },
    { "return os.exit(1)", "os%.exit is not available" },
    { "return debug.getinfo(1)", "'debug' is not available" },
    { "return package.loaded", "'package' is not available" },
    { "return dofile('/etc/passwd')", "'dofile' is not available" },
    { "return loadfile('/etc/passwd')", "'loadfile' is not available" },
    { "return collectgarbage('stop')", "'collectgarbage' is not available" },
    { "return require 'mw.stack'", "module 'mw%.stack' is not available to stack files" },
    { "return require 'mw.sandbox'", "not available to stack files" },
    { "return require 'mw.docker'", "not available to stack files" },
    { "return require 'io'", "module 'io' not found" },
    { "return require '../x'", "bad module name" },
    { "return require 'a/b'", "bad module name" },
    { "return require '.hidden'", "bad module name" },
    { "return load('return 1', 'x', 'b')", "only text chunks" },
    { "return load('return 1', 'x', 't', {})", "their own environment" },
    { "x = 1", "assignment to undeclared global 'x'" },
    { "return undefined_thing", "undeclared global 'undefined_thing'" },
    { "setmetatable({}, { __gc = print })", "__gc metamethods are not allowed" },
    { "local p = require 'mw.policy'; p.default = 1", "read%-only" },
    { "local p = require 'mw.policy'; setmetatable(p, nil)", "protected metatable" },
    { "return math.randomseed(1)", "attempt to call a nil value" },
    { "getmetatable('').__index.upper = nil", "attempt to index a nil value" },
  }
  for _, e in ipairs(escapes) do
    local ok, err = run(env, e[1])
    t.ok(not ok, "must fail: " .. e[1])
    t.match(tostring(err), e[2], e[1])
  end
  -- binary chunks are refused even when smuggled as a string
  local ok, fn, err = run(env, "return load(string.dump(function() end))")
  t.ok(ok and fn == nil)
  t.match(err, "binary chunks are not allowed")
  t.eq(("x"):upper(), "X", "the host's string library is untouched")
end)

t.test("sandbox: what a stack file may use", function()
  local env = sandbox.env(DIR)
  local ok, v = run(env, [[
    local b = require "mw.backoff"
    local d = require "mw.duration"
    local n = 0
    for _ in pairs(require "mw.policy") do n = n + 1 end
    local f = load("return 1 + 1")
    local co = coroutine.wrap(function() coroutine.yield(5) end)
    return { b.constant { delay = 1 }.kind, d.parse("1m"), n > 3, f(), co(), string.format("%d", 3),
             table.concat({ "a", "b" }), math.max(1, 2), utf8.char(72), type(os.time()), type(os.clock()),
             type(os.date("%Y")), select("#", 1, 2), _G == _ENV, tostring(os.getenv("PWD") ~= nil) }
  ]])
  t.ok(ok, tostring(v))
  t.same(v, { "constant", 60, true, 2, 5, "3", "ab", 2, "H", "number", "number", "string", 2, true, "true" })
end)

t.test("sandbox: helpers beside the stack, each loaded once and recorded", function()
  local env = sandbox.env(DIR)
  local ok, same = run(env, "return require 'helpers' == require 'helpers'")
  t.ok(ok and same)
  t.same(rawget(env, "__required"), { DIR .. "/helpers.lua" })
  local ok2, err = run(env, "return require 'nothing_here'")
  t.ok(not ok2)
  t.match(err, "module 'nothing_here' not found %(no file " .. DIR:gsub("%p", "%%%0") .. "/nothing_here%.lua%)")
  t.same(rawget(env, "__required"), { DIR .. "/helpers.lua", DIR .. "/nothing_here.lua" },
    "a missing helper is watched too, so creating it triggers a reload")
end)

t.test("sandbox: every call gives a fresh environment", function()
  local a, b = sandbox.env(DIR), sandbox.env(DIR)
  t.ok(a ~= b and a.string ~= b.string and a.os ~= b.os)
  a.string.custom = 1
  t.eq(b.string.custom, nil)
  t.eq(rawget(string, "custom"), nil, "the host's string table is another table")
  local _, pa = run(a, "return require 'mw.policy'")
  local _, pb = run(b, "return require 'mw.policy'")
  t.ok(pa ~= pb, "each environment has its own read-only view")
  t.eq(pa.default, pb.default)
  local ok, err = pcall(sandbox.env)
  t.ok(not ok)
  t.match(err, "expected a directory")
end)

t.test("sandbox: suggest", function()
  t.eq(sandbox.suggest("heartbeet", { "heartbeat", "image" }), "heartbeat")
  t.eq(sandbox.suggest("IMAGE", { "heartbeat", "image" }), "image")
  t.eq(sandbox.suggest("zzzzzz", { "heartbeat", "image" }), nil)
  t.eq(sandbox.suggest(5, { "image" }), nil)
end)

t.test("budget: a policy object survives the stack file that made it", function()
  local s = load_ok("tests/good/full/stack.lua")
  local p = s.components.ingestion.restart
  local action, delay = p { reason = "exited", exit_code = 1, uptime = 0, time = 0,
                            history = { { time = -1, reason = "exited", uptime = 0 } } }
  t.eq(action, "restart")
  t.ok(delay >= 0.18 and delay <= 0.22, "second failure: " .. tostring(delay))
  t.ok(backoff.is(p.backoff))
end)

t.test("a held component: its network fields go to its holder, its container joins it (mw.holder)", function()
  local spec = require "mw.spec"
  local src = [[return { name = 'h', networks = { back = {} }, components = {
    web = { image = 'x', ports = { '8080:80' }, hostname = 'w', dns = { '1.1.1.1' }, extra_hosts = { 'a:10.0.0.1' },
            networks = { 'back' }, env = { A = '1' } },
    own = { image = 'x', hold_network = false, ports = { '8081:80' } },
    host = { image = 'x', network_mode = 'host' },
    once = { image = 'x', job = true },
    side = { image = 'x', network_mode = 'service:web' },
    own_side = { image = 'x', network_mode = 'service:own' },
  } }]]
  local s = load_ok(ROOT .. "/stack.lua", { source = src })
  local body, hash, hold = spec.container(s, s.components.web, "sha256:1", 1)
  t.ok(hold, "web is held")
  t.eq(body.HostConfig.NetworkMode, "container:", "joins its holder (the id is the supervisor's)")
  t.eq(body.HostConfig.PortBindings, nil, "no ports on the container")
  t.eq(body.ExposedPorts, nil)
  t.eq(body.Hostname, nil)
  t.eq(body.HostConfig.Dns, nil)
  t.eq(body.HostConfig.ExtraHosts, nil)
  t.eq(body.NetworkingConfig, nil)
  t.same(body.Env, { "A=1" }, "the rest stays on the container")
  local hb = require("mw.docker").container_spec((function()
    local d = {}
    for k, v in pairs(hold.desc) do d[k] = v end
    d.image = "holder"
    return d
  end)())
  t.eq(hb.Hostname, "w", "the holder has the hostname")
  t.ok(hb.HostConfig.PortBindings["80/tcp"], "and the ports")
  t.same(hb.HostConfig.Dns, { "1.1.1.1" })
  t.same(hb.HostConfig.ExtraHosts, { "a:10.0.0.1" })
  t.same(hb.NetworkingConfig.EndpointsConfig["mw-h"].Aliases, { "web" }, "and the name on the stack's network")
  t.eq(hb.StopSignal, "SIGKILL", "its process ignores SIGTERM")
  t.eq(hold.desc.labels["mw.holder-hash"], hold.hash)
  -- another extra network changes the holder's hash; an env change only the container's
  local s2 = load_ok(ROOT .. "/stack.lua", { source = (src:gsub("networks = { 'back' }", "networks = {}")) })
  local _, hash2, hold2 = spec.container(s2, s2.components.web, "sha256:1", 1)
  t.ok(hold2.hash ~= hold.hash and hash2 ~= hash, "extra networks: both hashes")
  local s3 = load_ok(ROOT .. "/stack.lua", { source = (src:gsub("A = '1'", "A = '2'")) })
  local _, hash3, hold3 = spec.container(s3, s3.components.web, "sha256:1", 1)
  t.ok(hold3.hash == hold.hash and hash3 ~= hash, "env: the container's hash only")
  for _, name in ipairs { "own", "host", "once" } do
    local b, _, h = spec.container(s, s.components[name], "sha256:1", 1)
    t.eq(h, nil, name .. " is not held")
    t.ok(b.HostConfig.NetworkMode ~= "container:", name .. " has its own network mode")
  end
  t.eq(spec.network_mode(s, "service:web"), "container:h-web.net", "a sharer of a held one joins its holder")
  t.eq(spec.network_mode(s, "service:own"), "container:h-own", "of one not held, its container")
  t.eq(spec.holder_name(s, "web-2"), "h-web-2.net")
end)

t.test("networks: addresses, aliases and external names are in the config hash; the list form hashes as before", function()
  local spec = require "mw.spec"
  local function hash(nets, comp_nets)
    local src = "return { name = 'n', networks = " .. nets .. ", components = { a = { image = 'x', networks = " ..
      comp_nets .. " } } }"
    local s = load_ok(ROOT .. "/stack.lua", { source = src })
    local _, h = spec.container(s, s.components.a, "sha256:1")
    return h, s
  end
  local base = hash("{ back = { subnet = '10.250.0.0/24' } }", "{ 'back' }")
  local addr = hash("{ back = { subnet = '10.250.0.0/24' } }", "{ back = { ipv4_address = '10.250.0.9' } }")
  local addr2 = hash("{ back = { subnet = '10.250.0.0/24' } }", "{ back = { ipv4_address = '10.250.0.8' } }")
  local alias = hash("{ back = { subnet = '10.250.0.0/24' } }", "{ back = { aliases = { 'x' } } }")
  local plain = hash("{ back = { subnet = '10.250.0.0/24' } }", "{ back = {} }")
  t.ok(base ~= addr and addr ~= addr2 and base ~= alias, "an address or alias changes the hash")
  t.eq(plain, base, "back = {} is the list form")
  local ext1, s = hash("{ back = { external = true, name = 'one' } }", "{ 'back' }")
  local ext2 = hash("{ back = { external = true, name = 'two' } }", "{ 'back' }")
  t.ok(ext1 ~= ext2, "the external network's name changes the hash")
  t.same(s.components.a.networks, { { name = "back", external = "one" } })
  t.eq(spec.extra_network(s, "back"), "one")
  t.match(stack.plan(s), "networks: back %(external one, never created or removed%)")
end)

os.exit(t.run())
