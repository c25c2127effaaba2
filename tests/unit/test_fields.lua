-- The one table of component fields (lua/mw/fields.lua) and its four readers: a field added to
-- the table but not handled by validation, hashing, the container spec or import fails here.
local t = require "t"
local fields = require "mw.fields"
local validate = require "mw.validate"
local compose = require "mw.compose"
local stack = require "mw.stack"
local spec = require "mw.spec"
local docker = require "mw.docker"
local fs = require "mw.fs"

-- A value for each field that changes what runs, written as in a stack file. A field that is
-- hashed or reaches the container must have one: the tests below change it and look.
local SAMPLES = {
  image = 'image = "redis"',
  command = 'command = "echo hi"',
  entrypoint = 'entrypoint = { "/bin/sh" }',
  env = 'env = { A = "1" }',
  env_file = 'env_file = { "app.env" }',
  job = 'job = true',
  ports = 'ports = { "8080:80" }',
  volumes = 'volumes = { "data:/data" }',
  secrets = 'secrets = { token = "./token.txt" }',
  configs = 'configs = { ["app.ini"] = { file = "./token.txt", target = "/etc/app.ini" } }',
  working_dir = 'working_dir = "/w"',
  user = 'user = "1000"',
  labels = 'labels = { team = "a" }',
  hostname = 'hostname = "h"',
  extra_hosts = 'extra_hosts = { "db.local:10.0.0.2" }',
  stop_signal = 'stop_signal = "INT"',
  stop_grace = 'stop_grace = "3s"',
  init = 'init = true',
  hold_network = 'hold_network = false',
  read_only = 'read_only = true',
  cap_add = 'cap_add = { "NET_ADMIN" }',
  cap_drop = 'cap_drop = { "ALL" }',
  memory = 'memory = "64m"',
  cpus = 'cpus = 0.5',
  shm_size = 'shm_size = "32m"',
  ulimits = 'ulimits = { nofile = 1024 }',
  networks = 'networks = { "front" }',
  privileged = 'privileged = true',
  network_mode = 'network_mode = "host"',
  devices = 'devices = { "/dev/null:/dev/mynull:r" }',
  gpus = 'gpus = "all"',
  sysctls = 'sysctls = { ["net.core.somaxconn"] = 1024 }',
  dns = 'dns = { "127.0.0.53" }',
  dns_search = 'dns_search = { "example.internal" }',
  dns_opt = 'dns_opt = { "ndots:2" }',
  security_opt = 'security_opt = { "no-new-privileges:true" }',
  ipc = 'ipc = "shareable"',
  pid = 'pid = "host"',
  group_add = 'group_add = { "audio" }',
  oom_score_adj = 'oom_score_adj = 500',
  memory_reservation = 'memory_reservation = "32m"',
  logging = 'logging = { driver = "local", options = { ["max-size"] = "1m" } }',
}

local dir = os.tmpname()
os.remove(dir)
assert(fs.mkdirp(dir))
assert(fs.write_atomic(dir .. "/token.txt", "s3cret"))
assert(fs.write_atomic(dir .. "/app.env", "FROM_FILE=1\n"))

-- The container body and config hash of component "app" with the given extra field text.
local function build(extra)
  local src = string.format('return { name = "fields", components = { app = { %s } } }',
    extra:find("^image =") and extra or ('image = "busybox", ' .. extra))
  local s, err = stack.load("stack.lua", { source = src, cwd = dir })
  assert(s, err)
  local c = s.components.app
  local body, hash, hold = spec.container(s, c, c.image, 1)
  body.Labels["mw.config-hash"] = nil       -- differs whenever the hash does; compared apart
  -- a held component's network fields are its holder's (mw.holder): compared with the body
  local held = ""
  if hold then
    local desc = {}
    for k, v in pairs(hold.desc) do desc[k] = v end
    desc.labels, desc.image = nil, "holder"
    held = docker.encode(docker.container_spec(desc))
  end
  return docker.encode(body) .. held, hash
end

t.test("every field names how each reader handles it, or why it does not", function()
  for _, f in ipairs(fields.component) do
    local n = f.name
    t.eq(type(validate.field[n]), "function", n .. ": no validator validate.field." .. n)
    t.ok(f.hash == true or type(f.hash) == "function" or (f.hash == false and type(f.why_hash) == "string"),
      n .. ": hash must be true, a function, or false with why_hash")
    t.ok(type(f.container) == "function" or (f.container == false and type(f.why_container) == "string"),
      n .. ": container must be a function, or false with why_container")
    if f.compose then
      t.ok(#f.compose > 0, n .. ": compose lists no keys")
      for _, key in ipairs(f.compose) do
        t.eq(type(compose.handlers[key]), "function", n .. ": no import handler for compose key " .. key)
      end
    else
      t.ok(f.compose == false and type(f.why_compose) == "string", n .. ": compose must list keys or say why not")
    end
  end
  -- and no reader handles a field the table does not list
  for n in pairs(validate.field) do t.ok(fields.by_name[n], "validate.field." .. n .. " is not in mw.fields") end
end)

t.test("import writes every field it can make, and only fields of the table", function()
  local written = {}
  for _, n in ipairs(compose.FIELD_ORDER) do
    t.ok(fields.by_name[n], "import writes '" .. n .. "', which mw.fields does not list")
    written[n] = true
  end
  for _, f in ipairs(fields.component) do
    if f.compose then t.ok(written[f.name], "import makes '" .. f.name .. "' but never writes it (FIELD_ORDER)") end
  end
end)

t.test("changing a hashed field changes the config hash (a reload recreates the container)", function()
  local _, base = build("")
  for _, f in ipairs(fields.component) do
    if f.hash then
      local sample = SAMPLES[f.name]
      t.ok(sample, f.name .. ": hashed, but the test has no sample value (add one to SAMPLES)")
      if sample then
        local _, hash = build(sample)
        t.ok(hash ~= base, f.name .. ": changing it leaves the config hash as it was")
      end
    end
  end
end)

-- Leaving a field out of the hash means a reload never recreates the container for it; the
-- fields that may are named here, so making one more such is a decision this test sees.
t.test("only fields that cannot change a container are left out of the hash", function()
  local unhashed = {}
  for _, f in ipairs(fields.component) do if not f.hash then unhashed[#unhashed + 1] = f.name end end
  t.eq(table.concat(unhashed, " "), "build pull depends_on heartbeat restart scale autoscale job profiles standby rollout on_event")
end)

t.test("changing a container field changes the container's create body", function()
  local base = build("")
  for _, f in ipairs(fields.component) do
    if f.container then
      local sample = SAMPLES[f.name]
      t.ok(sample, f.name .. ": reaches the container, but the test has no sample value (add one to SAMPLES)")
      if sample then t.ok(build(sample) ~= base, f.name .. ": changing it leaves the create body as it was") end
    end
  end
end)

t.test("a field's default is what a component without it gets", function()
  local s = assert(stack.load("stack.lua", { source = 'return { components = { app = { image = "busybox" } } }',
                                              cwd = dir }))
  for _, f in ipairs(fields.component) do
    local d = f.default
    if type(d) == "function" then d = d() end
    if f.name == "image" then
      t.eq(s.components.app.image, "busybox")
    elseif type(d) == "table" and next(d) == nil then
      t.eq(next(s.components.app[f.name]), nil, f.name)
    elseif type(d) == "table" then
      t.same(s.components.app[f.name], d, f.name)
    else
      t.eq(s.components.app[f.name], d, f.name)
    end
  end
end)

local ok = t.run()
fs.remove(dir .. "/token.txt")
fs.remove(dir .. "/app.env")
fs.remove(dir)
os.exit(ok)
