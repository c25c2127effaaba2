-- configs: files mounted read-only (README "configs"): validation, the content in the config
-- hash, the mounts, and `mw import` of compose's top-level and service `configs`.
local t = require "t"
local stack = require "mw.stack"
local spec = require "mw.spec"
local fs = require "mw.fs"
local yaml = require "mw.yaml"
local import = require "mw.import"
local tmp = require "tmp"
local run = require "run"

local dir = tmp.dir()
assert(fs.write_atomic(dir .. "/app.ini", "[app]\nport = 8080\n"))
assert(fs.write_atomic(dir .. "/nginx.conf", "events {}\n"))
assert(fs.mkdirp(dir .. "/adir"))

local function load(fields)
  local src = 'return { name = "cfg", components = { app = { image = "busybox", ' .. fields .. ' } } }'
  return stack.load("stack.lua", { source = src, cwd = dir })
end

t.test("configs: a name = file mounts at /<name>, a table at its target, read-only", function()
  local s = assert(load('configs = { ["app.ini"] = "./app.ini", ' ..
    'nginx = { file = "./nginx.conf", target = "/etc/nginx/nginx.conf" } }'))
  local c = s.components.app
  t.eq(#c.configs, 2)
  local body = spec.container(s, c, "busybox", 1)
  local mounts = {}
  for _, m in ipairs(body.HostConfig.Mounts) do mounts[m.Target] = m end
  t.eq(mounts["/app.ini"].Source, dir .. "/app.ini")
  t.eq(mounts["/app.ini"].ReadOnly, true)
  t.eq(mounts["/app.ini"].Type, "bind")
  t.eq(mounts["/etc/nginx/nginx.conf"].Source, dir .. "/nginx.conf")
  t.eq(mounts["/etc/nginx/nginx.conf"].ReadOnly, true)
  t.match(stack.plan(s), "configs %./app%.ini:/app%.ini:ro, %./nginx%.conf:/etc/nginx/nginx%.conf:ro")
end)

t.test("configs: bad input is one line naming the field", function()
  local cases = {
    { 'configs = { x = "./nope" }', 'config file "./nope" not found' },
    { 'configs = { x = "./adir" }', 'config file "./adir" is a directory, not a regular file' },
    { 'configs = { x = { file = "./app.ini", target = "rel/path" } }', "must be an absolute path" },
    { 'configs = { x = { file = "./app.ini", mode = "0440" } }', "unknown key 'mode'" },
    { 'configs = { ["bad name!"] = "./app.ini" }', "bad config name" },
    { 'configs = { a = { file = "./app.ini", target = "/c" }, b = { file = "./nginx.conf", target = "/c" } }',
      "config target \"/c\" is also used" },
    { 'configs = "./app.ini"', "configs" },
  }
  for _, c in ipairs(cases) do
    local s, err = load(c[1])
    t.eq(s, nil, c[1])
    t.ok(err and err:find(c[2], 1, true), c[1] .. " -> " .. tostring(err))
    t.ok(not err:find("\n"), "one line: " .. tostring(err))
  end
  local big = dir .. "/big"
  assert(fs.write_atomic(big, string.rep("x", stack.MAX_CONFIG + 1)))
  local s, err = load('configs = { big = "./big" }')
  t.eq(s, nil)
  t.match(err, "larger than 1 MiB")
end)

t.test("configs: the file's content is in the config hash, so an edit recreates on reload", function()
  local function hash()
    local s = assert(load('configs = { ["app.ini"] = "./app.ini" }'))
    local _, h = spec.container(s, s.components.app, "busybox", 1)
    return h
  end
  local h1 = hash()
  t.eq(hash(), h1, "same content, same hash")
  assert(fs.write_atomic(dir .. "/app.ini", "[app]\nport = 9090\n"))
  t.ok(hash() ~= h1, "changed content, changed hash")
end)

local function conv(text, opts)
  local doc = assert(yaml.decode(text))
  opts = opts or {}
  opts.dir, opts.env = dir, {}
  local src, w = import.convert(doc, opts)
  assert(src, w)
  return src, w
end

local function has(list, pat)
  for _, x in ipairs(list) do if x:find(pat) then return x end end
  return nil
end

t.test("import: configs from files, targets, and one warning for what has no equivalent", function()
  local src, w = conv([[
services:
  web:
    image: nginx:1.25
    configs:
      - app.ini
      - source: nginx
        target: /etc/nginx/nginx.conf
        mode: 0440
      - from_env
      - swarm
configs:
  app.ini:
    file: ./app.ini
  nginx:
    file: ./nginx.conf
  from_env:
    environment: NGINX_CONF
  swarm:
    external: true
]])
  local s = assert(stack.load(dir .. "/stack.lua", { source = src }))
  local c = s.components.web
  t.eq(#c.configs, 2)
  local by = {}
  for _, x in ipairs(c.configs) do by[x.name] = x end
  t.eq(by["app.ini"].target, "/app.ini")
  t.eq(by.nginx.target, "/etc/nginx/nginx.conf")
  t.ok(has(w, "^service web: 'configs.mode' has no equivalent: a bind mount keeps"), table.concat(w, " | "))
  t.ok(has(w, "^config 'from_env': 'environment' has no equivalent"), table.concat(w, " | "))
  t.ok(has(w, "^config 'swarm': 'external' has no equivalent"), table.concat(w, " | "))
  t.ok(src:find("-- compose: configs: from_env", 1, true), "the unmapped reference stays as a comment")
end)

t.test("mw import -o: a config's content becomes a file beside the stack file", function()
  local out = tmp.dir()
  local compose = out .. "/compose.yaml"
  assert(fs.write_atomic(compose, [[
services:
  web:
    image: busybox
    configs:
      - source: motd
        target: /etc/motd
configs:
  motd:
    content: |
      hello from a config
]]))
  local code, _, err = run.mw({ "import", compose, "-o", out .. "/stack.lua" }, { timeout = 30 })
  t.eq(code, 0, err)
  t.eq(fs.read(out .. "/configs/motd"), "hello from a config\n")
  local s = assert(stack.load(out .. "/stack.lua", { cwd = out }))
  t.eq(s.components.web.configs[1].target, "/etc/motd")
  t.eq(s.components.web.configs[1].source, out .. "/configs/motd")
  -- without -o nothing is written: the content stays a comment with one warning
  code, _, err = run.mw({ "import", compose }, { timeout = 30 })
  t.eq(code, 0, err)
  t.match(err, "config 'motd': 'content' has no equivalent: written to a file only with mw import %-o")
end)

t.run()
