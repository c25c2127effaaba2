-- Env files, mw.env / mw.interpolate, profiles and jobs as the stack loader sees them (no engine):
-- precedence, secrecy, the config hash, and one-line errors with file:line.
local t = require "t"
local fs = require "mw.fs"
local tmp = require "tmp"
local stack = require "mw.stack"
local spec = require "mw.spec"
local secret = require "mw.secret"

local function write(dir, name, text) assert(fs.write_atomic(dir .. "/" .. name, text)) end

local function load(dir, src, opts)
  opts = opts or {}
  write(dir, "stack.lua", src)
  return stack.load(dir .. "/stack.lua", opts)
end

local function env_of(s, name)
  return t.env_map(spec.container(s, s.components[name], "sha256:x", 1).Env)
end

t.test("env_file: later files win, env wins over all, values are secrets and hashed", function()
  local dir = tmp.dir()
  write(dir, "a.env", "A=1\nB=from-a\n# comment\nexport C='quoted # not a comment'\n")
  write(dir, "b.env", "B=from-b\nD=from-b\nHOME\n")
  local src = [[return { name = "e", components = { app = { image = "x", env_file = { "a.env", "b.env" },
    env = { D = "mine" } } } }]]
  local s = assert(load(dir, src))
  local env = env_of(s, "app")
  t.eq(env.A, "1")
  t.eq(env.B, "from-b", "a later file wins")
  t.eq(env.C, "quoted # not a comment")
  t.eq(env.D, "mine", "env wins")
  t.eq(env.HOME, os.getenv("HOME"), "a name alone takes mw's environment's value")
  for _, f in ipairs(s.components.app.env_file) do
    for _, v in pairs(f.vars) do t.ok(secret.is(v), "kept as a secret") t.eq(tostring(v), "<secret>") end
  end
  local plan = stack.plan(s)
  t.match(plan, "env_file %./a%.env, %./b%.env %(5 variables%)")
  t.ok(not plan:find("from-b", 1, true) and not plan:find("quoted", 1, true), plan)
  -- the required list (watched by mw run) holds the env files
  local req = table.concat(s.required, " ")
  t.ok(req:find(dir .. "/a.env", 1, true) and req:find(dir .. "/b.env", 1, true), req)
  -- a changed value changes the config hash; the label never carries it
  local _, h1 = spec.container(s, s.components.app, "sha256:x", 1)
  write(dir, "b.env", "B=other\nD=from-b\n")
  local s2 = assert(load(dir, src))
  local body2, h2 = spec.container(s2, s2.components.app, "sha256:x", 1)
  t.ok(h1 ~= h2, "the hash follows the files' values")
  for k, v in pairs(body2.Labels) do t.ok(not tostring(v):find("other", 1, true), k) end
end)

t.test("env_file: missing, not UTF-8, a directory, a bad line: one line with file:line", function()
  local dir = tmp.dir()
  write(dir, "bad.env", "OK=1\nV=\255\n")
  write(dir, "syntax.env", "OK=1\nthis is not a setting\n")
  assert(fs.mkdirp(dir .. "/d.env"))
  local cases = {
    { '"nope.env"', 'stack.lua:2: component \'app\': field \'env_file%[1%]\': env file "nope.env" not found' },
    { '"bad.env"', 'env file "bad.env" is not UTF%-8 text %(line 2%)' },
    { '{ "d.env" }', 'env file "d.env" is not a regular file' },
    { '"syntax.env"', 'env file "syntax.env" line 2: not NAME=value' },
    { '{ "bad.env", 3 }', "env_file%[1%]" },
    { '{ "a.env", "./a.env" }', 'is listed twice' },
    { '"quote.env"', 'env file "quote.env" line %d+: unterminated " quote' },
  }
  write(dir, "a.env", "A=1\n")
  write(dir, "quote.env", "A=1\nB=\"this is not closed\n")
  for _, c in ipairs(cases) do
    local s, err = load(dir, "return { name = \"e\", components = {\n app = { image = \"x\", env_file = " .. c[1] ..
      " } } }")
    t.eq(s, nil, c[1])
    t.match(err, c[2], c[1])
    t.ok(not err:find("\n"), "one line")
    t.ok(not err:find("this is not", 1, true), "the line's text (it may be a value) is not shown: " .. err)
  end
end)

t.test("mw.env and mw.interpolate: environment, then .env, then the default", function()
  local dir = tmp.dir()
  local src = [[return { name = "e", components = { app = { image = "x", env = {
    A = mw.env("MW_T_FROM_DOTENV", "dflt"), B = mw.env("MW_T_UNSET", "dflt"), C = mw.env("MW_T_EMPTY", "dflt"),
    D = mw.env("HOME"), E = mw.interpolate("${MW_T_FROM_DOTENV}-${MW_T_UNSET:-x}-$${literal}"),
    F = mw.env("MW_T_UNSET") == nil and "nil" or "set" } } } }]]
  local s = assert(load(dir, src))
  local env = s.components.app.env
  t.eq(env.A, "dflt", "no .env: the default")
  t.eq(env.D, os.getenv("HOME"))
  t.ok(table.concat(s.required, " "):find(dir .. "/.env", 1, true), ".env is watched even before it exists")
  write(dir, ".env", "MW_T_FROM_DOTENV=dot\nMW_T_EMPTY=\nHOME=/not-this\n")
  s = assert(load(dir, src))
  env = s.components.app.env
  t.eq(env.A, "dot")
  t.eq(env.B, "dflt")
  t.eq(env.C, "dflt", "empty is unset, as ${VAR:-default}")
  t.eq(env.D, os.getenv("HOME"), "mw's environment wins over .env, as the shell does in compose")
  t.eq(env.E, "dot-x-${literal}")
  t.eq(env.F, "nil")
  write(dir, ".env", "X=\255\n")
  local nothing, err = load(dir, src)
  t.eq(nothing, nil)
  t.match(err, "stack%.lua:2: mw%.env: %.env is not UTF%-8 text %(line 1%)")
  local _, err2 = load(dir, 'return { components = { a = { image = mw.nope } } }')
  t.match(err2, "mw%.nope does not exist")
end)

t.test("profiles: included by name, left out otherwise, unknown ones and dependencies refused", function()
  local dir = tmp.dir()
  local src = [[return { name = "p", components = {
  app = { image = "x" },
  dbg = { image = "x", profiles = { "debug" } },
  tool = { image = "x", profiles = { "tools", "debug" }, depends_on = { "app" } },
} }]]
  local s = assert(load(dir, src))
  t.same(s.order, { "app" })
  t.same(s.excluded, { dbg = { "debug" }, tool = { "tools", "debug" } })
  t.match(stack.plan(s), "left out, their profiles not active: dbg %(profile debug%), tool %(profile tools or debug%)")
  s = assert(load(dir, src, { profiles = { "tools" } }))
  t.same(s.order, { "app", "tool" })
  s = assert(load(dir, src, { profiles = { "debug" } }))
  t.same(s.order, { "app", "dbg", "tool" })
  local nothing, err = load(dir, src, { profiles = { "debgu" } })
  t.eq(nothing, nil)
  t.eq(err, dir .. "/stack.lua: profile 'debgu' is declared by no component (its profiles: debug, tools)")
  local _, err3 = load(dir, [[return { components = { a = { image = "x", profiles = { "x" } } } }]])
  t.match(err3, "no component runs with the active profiles")
end)

t.test("jobs: completed needs a job, healthy refuses one, the plan says so", function()
  local dir = tmp.dir()
  local s = assert(load(dir, [[return { name = "j", components = {
  migrate = { image = "x", job = true },
  app = { image = "x", depends_on = { migrate = "completed" } },
} }]]))
  t.eq(s.components.migrate.job, true)
  t.eq(s.components.app.depends_on.migrate, "completed")
  t.same(s.order, { "migrate", "app" })
  local plan = stack.plan(s)
  t.match(plan, "migrate: .*job %(runs to completion%)")
  t.match(plan, "after migrate %(completed%)")
  local _, err = load(dir, [[return { components = { a = { image = "x", depends_on = { b = "done" } }, b = { image = "x" } } }]])
  t.match(err, 'condition must be "started", "healthy" or "completed", got "done"')
end)

os.exit(t.run())
