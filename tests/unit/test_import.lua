-- mw import: the YAML decoder, compose -> stack.lua field by field, and a corpus of compose files.
local t = require "t"
local yaml = require "mw.yaml"
local import = require "mw.import"
local stack = require "mw.stack"
local core = require "mw.core"
local fs = require "mw.fs"
local tmp = require "tmp"
local run = require "run"

local NULL = yaml.null
local CORPUS = "tests/compose"

-- YAML -----------------------------------------------------------------------------------------

local function decode(text)
  local v, err = yaml.decode(text)
  if v == nil then error("decode failed: " .. tostring(err), 2) end
  return v
end

t.test("yaml: plain scalars resolve to numbers, booleans and null; the rest stays text", function()
  local v = decode([[
int: 42
neg: -7
plus: +7
float: 2.5
exp: 1e3
half: -.5
hex: 0x1f
oct: 0o17
zero: 0
leading_zero: 0755
big: 9223372036854775808
inf: .inf
ninf: -.Inf
nan: .nan
t1: true
t2: True
f1: false
yes: yes
no: no
on: on
off: off
tilde: ~
null1: null
empty:
quoted_int: "42"
single: '3.0'
tagged: !!str 12
custom_tag: !reset 5
version: 1.10
port: 8080:80
colon_time: 22:22
]])
  t.eq(math.type(v.int), "integer"); t.eq(v.int, 42)
  t.eq(v.neg, -7); t.eq(v.plus, 7)
  t.eq(math.type(v.float), "float"); t.eq(v.float, 2.5)
  t.eq(v.exp, 1000.0); t.eq(v.half, -0.5)
  t.eq(v.hex, 31); t.eq(v.oct, 15); t.eq(v.zero, 0)
  t.eq(v.leading_zero, "0755", "a leading zero keeps the text (modes, zip codes)")
  t.eq(math.type(v.big), "float")
  t.eq(v.inf, math.huge); t.eq(v.ninf, -math.huge); t.ok(v.nan ~= v.nan)
  t.eq(v.t1, true); t.eq(v.t2, true); t.eq(v.f1, false)
  t.eq(v.yes, "yes"); t.eq(v.no, "no"); t.eq(v.on, "on"); t.eq(v.off, "off")
  t.eq(v.tilde, NULL); t.eq(v.null1, NULL); t.eq(v.empty, NULL)
  t.eq(v.quoted_int, "42"); t.eq(v.single, "3.0"); t.eq(v.tagged, "12")
  t.eq(v.custom_tag, 5)
  t.eq(v.version, 1.1)
  t.eq(v.port, "8080:80", "no YAML 1.1 sexagesimal numbers")
  t.eq(v.colon_time, "22:22")
end)

t.test("yaml: null is one unique light userdata, kept in mappings and sequences", function()
  t.eq(type(NULL), "userdata")
  local cjson = require "cjson"
  t.ok(NULL ~= cjson.null, "not NULL, so not cjson.null either")
  local v = decode("a:\nb: [~, 1, null]\nc:\n  - \n  - x\n")
  t.eq(v.a, NULL)
  t.same(v.b, { NULL, 1, NULL })
  t.same(v.c, { NULL, "x" })
  t.eq(decode(""), NULL)
  t.eq(decode("# only a comment\n"), NULL)
  t.eq(decode("---\n...\n"), NULL)
end)

t.test("yaml: block and flow nesting, keys are always strings", function()
  local v = decode([==[
services:
  web:
    ports: ["80:80", 443]
    env: {A: 1, B: "two"}
    list:
      - name: x
        items: [[1, 2], []]
      - {}
8080: numeric key
true: boolean key
]==])
  t.same(v.services.web.ports, { "80:80", 443 })
  t.same(v.services.web.env, { A = 1, B = "two" })
  t.eq(v.services.web.list[1].name, "x")
  t.same(v.services.web.list[1].items, { { 1, 2 }, {} })
  t.same(v.services.web.list[2], {})
  t.eq(v["8080"], "numeric key")
  t.eq(v["true"], "boolean key")
end)

t.test("yaml: literal and folded block scalars, quoted escapes", function()
  local v = decode("lit: |\n  line one\n  line two\nfold: >\n  a\n  b\n\n  c\n" ..
    "q: \"tab\\there \\\"x\\\" \\u00e9\"\ns: 'it''s'\n")
  t.eq(v.lit, "line one\nline two\n")
  t.eq(v.fold, "a b\nc\n")
  t.eq(v.q, "tab\there \"x\" \u{e9}")
  t.eq(v.s, "it's")
end)

t.test("yaml: anchors, aliases and merge keys", function()
  local v = decode([[
base: &base
  restart: always
  env: &env {A: 1, B: 2}
  tags: [x, y]
other: &other
  restart: never
  extra: 1
one:
  <<: *base
  restart: on-failure
two:
  <<: [*other, *base]
three:
  env:
    <<: *env
    B: 3
    C: 4
copy: *base
]])
  t.eq(v.one.restart, "on-failure", "a key given in the mapping wins over a merged one")
  t.same(v.one.env, { A = 1, B = 2 })
  t.eq(v.two.restart, "never", "the first merged mapping wins")
  t.eq(v.two.extra, 1)
  t.same(v.two.tags, { "x", "y" })
  t.same(v.three.env, { A = 1, B = 3, C = 4 })
  t.same(v.copy, v.base)
  t.ok(v.copy ~= v.base and v.copy.env ~= v.base.env, "an alias is a copy, not a shared table")
  v.copy.env.A = 99
  t.eq(v.base.env.A, 1)
  t.eq(v.one["<<"], nil, "the merge key itself is not kept")
  -- an anchor may be redefined; an alias takes the latest
  local r = decode("a: &x 1\nb: &x 2\nc: *x\n")
  t.eq(r.c, 2)
  -- a quoted "<<" is an ordinary key
  t.eq(decode("'<<': 1\n")["<<"], 1)
end)

t.test("yaml: errors carry line and column", function()
  local cases = {
    { "a: [1\n", "^line 2, column 1: did not find expected ',' or ']'" },
    { "services:\n  web:\n    image: nginx\n     ports:\n", "^line 4, column 11: mapping values are not allowed" },
    { "a:\n  b: 1\n c: 2\n", "^line 3, column 2: did not find expected key" },
    { "a: 1\na: 2\n", "^line 2, column 1: duplicate key 'a'" },
    { "a: *nowhere\n", "^line 1, column 4: unknown anchor 'nowhere'" },
    { "a: &a [1, *a]\n", "^line 1, column 11: unknown anchor 'a'" },
    { "a:\n  <<: 5\n", "^line 2, column 3: merge key '<<' needs a mapping or a list of mappings" },
    { "a:\n  <<: [{x: 1}, 2]\n", "^line 2, column 3: merge key" },
    { "? [1, 2]\n: x\n", "^line 1, column 3: only text can be a mapping key" },
    { "ok: 1\nbad: \"\x01\"\n", "^line 2, column 7: control characters are not allowed" },
    { "a: \xff\n", "^line 1, column 4: invalid leading UTF%-8 octet" },
    { "a:\n\t- 1\n", "^line 2, column 1: found character that cannot start any token" },
  }
  for _, c in ipairs(cases) do
    local v, err = yaml.decode(c[1])
    t.eq(v, nil, c[1])
    t.match(err, c[2], c[1])
    t.ok(not err:find("\n"), "one line")
  end
end)

t.test("yaml: only the first document is read", function()
  t.eq(decode("--- 1\n--- 2\n"), 1)
  t.same(decode("a: 1\n---\nb: [unclosed\n"), { a = 1 })
end)

t.test("yaml: an alias bomb is refused quickly", function()
  local lines = { 'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]' }
  for i = 2, 9 do
    local p, c = string.char(96 + i - 1), string.char(96 + i)
    lines[#lines + 1] = c .. ": &" .. c .. " [" .. string.rep("*" .. p .. ",", 8) .. "*" .. p .. "]"
  end
  local t0 = os.clock()
  local v, err = yaml.decode(table.concat(lines, "\n"))
  t.eq(v, nil)
  t.match(err, "^line %d+, column %d+: document too large: more than 1000000 nodes")
  t.ok(os.clock() - t0 < 2, "took " .. (os.clock() - t0) .. "s")
  -- the same shape a little smaller is fine
  local ok = yaml.decode(table.concat(lines, "\n", 1, 5))
  t.eq(#ok.e, 9)
  t.eq(yaml.max_nodes, 1000000)
end)

t.test("yaml: nesting deeper than the limit is refused, flow or block", function()
  t.eq(yaml.max_depth, 200)
  local ok = yaml.decode(string.rep("[", 200) .. string.rep("]", 200))
  t.ok(ok, "200 levels are fine")
  local v, err = yaml.decode(string.rep("[", 201) .. string.rep("]", 201))
  t.eq(v, nil)
  t.eq(err, "line 1, column 201: nesting deeper than 200 levels")
  local block = {}
  for i = 0, 210 do block[#block + 1] = string.rep(" ", i) .. "k" .. i .. ":" end
  v, err = yaml.decode(table.concat(block, "\n") .. " x\n")
  t.eq(v, nil)
  t.match(err, "^line 201, column 201: nesting deeper than 200 levels")
  -- a deep flow sequence far past the limit fails just as fast
  v, err = yaml.decode(string.rep("[", 1e6))
  t.eq(v, nil); t.match(err, "nesting deeper")
  -- an alias can carry depth too
  v, err = yaml.decode("a: &a " .. string.rep("[", 150) .. string.rep("]", 150) ..
    "\nb: " .. string.rep("[", 60) .. "*a" .. string.rep("]", 60) .. "\n")
  t.eq(v, nil); t.match(err, "nesting deeper than 200 levels")
end)

t.test("yaml: misuse raises; big documents decode", function()
  t.ok(not pcall(yaml.decode), "no argument")
  t.ok(not pcall(yaml.decode, {}), "a table")
  local items = {}
  for i = 1, 50000 do items[i] = "- {n: " .. i .. ", s: item" .. i .. "}" end
  local v = decode(table.concat(items, "\n"))
  t.eq(#v, 50000); t.eq(v[50000].n, 50000); t.eq(v[1].s, "item1")
end)

-- convert, field by field ------------------------------------------------------------------------

-- A scratch directory with files for bind mounts, builds, secrets and env files.
local SCRATCH = tmp.dir()
assert(fs.mkdirp(SCRATCH .. "/proj/app"))
assert(fs.mkdirp(SCRATCH .. "/proj/conf"))
assert(fs.mkdirp(SCRATCH .. "/elsewhere"))
assert(fs.write_atomic(SCRATCH .. "/proj/app/Dockerfile", "FROM scratch\n"))
assert(fs.write_atomic(SCRATCH .. "/proj/app/Dockerfile.prod", "FROM scratch\n"))
assert(fs.write_atomic(SCRATCH .. "/proj/conf/app.conf", "x = 1\n"))
assert(fs.write_atomic(SCRATCH .. "/proj/pw.txt", "hunter2\n"))
local PROJ = SCRATCH .. "/proj"

-- The environment a loaded stack gives a component's container (env_file read, env over it).
local function container_env(s, comp)
  return t.env_map(require("mw.spec").container(s, s.components[comp], "sha256:x", 1).Env)
end

-- compose text -> source, warnings, loaded stack (or nil, message)
local function conv(text, opts)
  opts = opts or {}
  opts.dir = opts.dir or PROJ
  opts.env = opts.env or {}
  local files = opts.files
  opts.files = nil
  if files then
    opts.read = function(p)
      local rel = p:sub(#opts.dir + 2)
      if files[rel] then return files[rel] end
      return nil, p .. ": No such file or directory"
    end
  end
  local src, w, w2 = import.convert(decode(text), opts)
  if not src then return nil, w, w2 end
  local s, err = stack.load((opts.out_dir or opts.dir) .. "/stack.lua", { source = src })
  if not s then error("stack.load failed: " .. err .. "\n" .. src, 2) end
  return src, w, s
end

local function has(list, pat)
  for _, x in ipairs(list) do if x:find(pat) then return x end end
  return nil
end

local function warned(w, pat) t.ok(has(w, pat), "no warning matching " .. pat .. " in: " .. table.concat(w, " | ")) end

local function commented(src, pat)
  for line in src:gmatch("[^\n]+") do
    if line:find("^%s*%-%- compose: ") and line:find(pat) then return end
  end
  error("no comment matching " .. pat .. " in:\n" .. src, 2)
end

t.test("convert: image, command and entrypoint (string or list)", function()
  local src, w, s = conv([[
services:
  web:
    image: nginx:1.25
    command: nginx -g 'daemon off;'
    entrypoint: ["/docker-entrypoint.sh"]
  job:
    image: busybox
    command: ["sh", "-c", "echo 1"]
    entrypoint: ""
]])
  local c = s.components.web
  t.eq(c.image, "nginx:1.25")
  t.same(c.command, { "nginx", "-g", "daemon off;" })
  t.same(c.entrypoint, { "/docker-entrypoint.sh" })
  t.same(s.components.job.command, { "sh", "-c", "echo 1" })
  t.eq(s.components.job.entrypoint, nil)
  warned(w, "service job: 'entrypoint': an empty value resets the image's")
  commented(src, 'entrypoint: ""')
  t.match(src, "^%-%- Imported from compose.yaml by `mw import`")
  t.ok(not src:find("require"), "no require when no policy is used")
end)

t.test("convert: build as a string or a mapping, args in both forms, target, image beside build", function()
  local src, w, s = conv([[
services:
  a:
    build: ./app
  b:
    build:
      context: app
      dockerfile: Dockerfile.prod
      target: prod
      args:
        VERSION: 2
        FLAG: "yes"
        FROM_ENV:
      labels: {x: y}
    image: example/b:1
  c:
    build:
      context: ./app
      args: ["A=1", "B=x=y", "PASSED"]
]], { env = { FROM_ENV = "e1", PASSED = "p1" } })
  t.eq(s.components.a.build.context, PROJ .. "/app")
  local b = s.components.b.build
  t.eq(b.context, PROJ .. "/app")
  t.eq(b.dockerfile, PROJ .. "/app/Dockerfile.prod")
  t.eq(b.target, "prod")
  -- an arg without a value comes from the environment mw runs in, as with compose
  t.match(src, 'FROM_ENV = os.getenv "FROM_ENV"')
  t.same(b.args, { VERSION = "2", FLAG = "yes", FROM_ENV = os.getenv("FROM_ENV") })
  t.eq(s.components.b.image, nil)
  warned(w, "service b: 'image': ignored beside 'build'")
  warned(w, "service b: 'build.labels' has no equivalent")
  t.same(s.components.c.build.args, { A = "1", B = "x=y", PASSED = os.getenv("PASSED") })
end)

t.test("convert: environment as a map or a list, passthrough, env_file precedence", function()
  assert(fs.write_atomic(PROJ .. "/common.env", "# comment\nA=1\nOVERRIDE=common\nexport B='x y'\n", 420))
  assert(fs.write_atomic(PROJ .. "/web.env", "A=2 # trailing comment\nC=\"multi\nline\"\nD=${NOT_INTERPOLATED}\n", 420))
  local src, w, s = conv([[
services:
  web:
    image: nginx
    env_file:
      - common.env
      - path: ./web.env
      - path: ./optional.env
        required: false
    environment:
      - OVERRIDE=from-environment
      - PLAIN=1
      - FROM_SHELL
  db:
    image: postgres
    environment:
      NUM: 5
      FLOAT: 1.5
      BOOL: true
      NOTHING:
      EMPTY: ""
]], { files = {
    ["common.env"] = "# comment\nA=1\nOVERRIDE=common\nexport B='x y'\n",
    ["web.env"] = "A=2 # trailing comment\nC=\"multi\nline\"\nD=${NOT_INTERPOLATED}\n",
  }, env = { FROM_SHELL = "shell", NOTHING = "n" } })
  -- the env files are named, not copied: mw reads them when the stack loads
  t.match(src, 'env_file = { "%./common%.env", "%./web%.env" },')
  for _, v in ipairs { "x y", "multi", "NOT_INTERPOLATED", '"common"' } do
    t.ok(not src:find(v, 1, true), "no env file value in the source: " .. v)
  end
  local e = container_env(s, "web")
  t.eq(e.A, "2", "a later env_file wins")
  t.eq(e.B, "x y")
  t.eq(e.C, "multi\nline")
  t.eq(e.D, "${NOT_INTERPOLATED}", "env_file values are literal")
  t.eq(e.OVERRIDE, "from-environment", "environment wins over env_file")
  t.eq(e.PLAIN, "1")
  t.eq(e.FROM_SHELL, os.getenv("FROM_SHELL"), "read when the stack loads")
  t.ok(not src:find("-- from ", 1, true), "one source of env: no source comments")
  t.match(src, 'FROM_SHELL = os.getenv "FROM_SHELL"')
  warned(w, "service web: 'env_file': not found when imported")
  commented(src, "env_file: %./optional%.env")
  local d = s.components.db.env
  t.same(d, { NUM = "5", FLOAT = "1.5", BOOL = "true", NOTHING = os.getenv("NOTHING"), EMPTY = "" })
  -- an optional env_file that is there is named too, with a word that mw will need it
  assert(fs.write_atomic(PROJ .. "/opt.env", "X=1\n", 420))
  local osrc, ow = conv("services:\n  a:\n    image: x\n    env_file:\n      - path: opt.env\n        required: false\n",
    { files = { ["opt.env"] = "X=1\n" } })
  t.match(osrc, 'env_file = "%./opt%.env",')
  warned(ow, "service a: env_file opt%.env: required: false, but mw reads it whenever the stack loads")
  -- a file listed twice is named once, at its later place (where compose lets it win)
  local tsrc = conv("services:\n  a:\n    image: x\n    env_file: [common.env, web.env, common.env]\n",
    { files = { ["common.env"] = "A=1\n", ["web.env"] = "A=2\n" } })
  t.match(tsrc, 'env_file = { "%./web%.env", "%./common%.env" },')
  -- a required env_file that is missing stops the import with one line
  local nothing, err = conv("services:\n  a:\n    image: x\n    env_file: gone.env\n", { files = {} })
  t.eq(nothing, nil)
  t.match(err, "^service a: env_file gone.env: No such file or directory$")
end)

t.test("convert: interpolation from the environment and .env, as compose does", function()
  local src, w, s = conv([[
services:
  web:
    image: "nginx:${TAG}"
    environment:
      A: ${FROM_DOTENV}
      B: ${UNSET:-default}
      C: ${EMPTY:-empty-default}
      D: ${EMPTY-kept-empty}
      E: ${SET:+alternative}
      F: $$literal and $${braced}
      G: ${UNSET:-${SET}-nested}
      H: $SET/suffix
      I: ${NOT_THERE}
      J: ${SHADOWED}
    ports:
      - "${PORT:-8080}:80"
]], { files = { [".env"] = "TAG=1.25\nFROM_DOTENV=dot\nSHADOWED=dotenv\n" },
      env = { SET = "s", EMPTY = "", SHADOWED = "process" } })
  local c = s.components.web
  t.eq(c.image, "nginx:1.25")
  t.same(c.env, { A = "dot", B = "default", C = "empty-default", D = "", E = "alternative",
                  F = "$literal and ${braced}", G = "s-nested", H = "s/suffix", I = "", J = "process" })
  t.eq(c.ports[1].host, 8080)
  warned(w, "^variable 'NOT_THERE' is not set; using an empty string$")
  t.ok(not src:find("TAG"), "nothing left to interpolate")
  t.match(src, 'F = "%$literal and %${braced}"')
  local nothing, err = conv("services:\n  a:\n    image: ${IMAGE:?set IMAGE first}\n")
  t.eq(nothing, nil)
  t.eq(err, "services.a.image: required variable IMAGE is missing a value: set IMAGE first")
  nothing, err = conv("services:\n  a:\n    image: ${IMAGE\n")
  t.eq(nothing, nil); t.match(err, "unterminated")
end)

t.test("convert: depends_on as a list or with conditions", function()
  local src, w, s = conv([[
services:
  web:
    image: app
    depends_on:
      db: {condition: service_healthy}
      cache: {condition: service_started}
      migrate: {condition: service_completed_successfully}
      plain: {condition: service_healthy}
  worker:
    image: app
    depends_on: [db, cache]
  db:
    image: postgres
    healthcheck: {test: ["CMD", "pg_isready"]}
  cache: {image: redis}
  migrate: {image: app}
  plain: {image: app}
]])
  t.same(s.components.web.depends_on, { db = "healthy", cache = "started", migrate = "completed", plain = "started" })
  t.same(s.components.worker.depends_on, { db = "started", cache = "started" })
  t.match(src, 'depends_on = { "db", "cache" }')
  -- what compose waits to complete is a job, waited on as "completed"
  t.eq(s.components.migrate.job, true)
  t.eq(s.components.cache.job, false)
  for _, line in ipairs(w) do t.ok(not line:find("depends_on.migrate", 1, true), line) end
  warned(w, "service web: depends on plain being healthy, but plain has no healthcheck")
  commented(src, "depends_on plain: condition service_healthy")
end)

t.test("convert: profiles stay profiles", function()
  local src, w = conv([[
services:
  web: {image: app}
  debug:
    image: app
    profiles: [debug, tools]
]])
  t.match(src, 'profiles = { "debug", "tools" }')
  for _, line in ipairs(w) do t.ok(not line:find("profiles", 1, true), line) end
  local s = assert(stack.load(PROJ .. "/stack.lua", { source = src, profiles = { "tools" } }))
  t.same(s.components.debug.profiles, { "debug", "tools" })
  s = assert(stack.load(PROJ .. "/stack.lua", { source = src }))
  t.eq(s.components.debug, nil)
end)

t.test("convert: healthcheck forms become heartbeats with compose's timings", function()
  local src, w, s = conv([[
services:
  list:
    image: redis
    healthcheck:
      test: ["CMD", "redis-cli", "ping"]
      interval: 1m30s
      timeout: 10s
      retries: 5
      start_period: 1m
      start_interval: 2s
  shell:
    image: pg
    healthcheck: {test: ["CMD-SHELL", "pg_isready || exit 1"], interval: 500ms}
  string:
    image: web
    healthcheck: {test: "curl -f http://localhost/"}
  none:
    image: x
    healthcheck: {test: ["NONE"]}
  disabled:
    image: x
    healthcheck: {disable: yes}
  inherit:
    image: x
    healthcheck: {interval: 5s}
]])
  local hb = s.components.list.heartbeat
  t.eq(hb.kind, "exec")
  t.same(hb.exec, { "redis-cli", "ping" })
  t.eq(hb.interval, 90); t.eq(hb.timeout, 10); t.eq(hb.misses, 5); t.eq(hb.grace, 60)
  warned(w, "service list: 'healthcheck.start_interval' has no equivalent")
  hb = s.components.shell.heartbeat
  t.same(hb.exec, { "sh", "-c", "pg_isready || exit 1" })
  t.eq(hb.interval, 0.5); t.eq(hb.timeout, 30, "compose's default timeout"); t.eq(hb.misses, 3)
  t.same(s.components.string.heartbeat.exec, { "sh", "-c", "curl -f http://localhost/" })
  t.eq(s.components.string.heartbeat.interval, 30, "compose's default interval")
  t.eq(s.components.none.heartbeat, false)
  t.eq(s.components.disabled.heartbeat, false)
  t.eq(s.components.inherit.heartbeat, false)
  warned(w, "service inherit: 'healthcheck': without 'test' it relies on the image's HEALTHCHECK")
  commented(src, "healthcheck: {interval: 5s}")
end)

t.test("convert: restart and deploy.restart_policy become policies", function()
  local src, w, s = conv([[
services:
  a: {image: x, restart: "no"}
  b: {image: x, restart: no}
  c: {image: x, restart: always}
  d: {image: x, restart: unless-stopped}
  e: {image: x, restart: on-failure}
  f: {image: x, restart: "on-failure:4"}
  g:
    image: x
    deploy:
      restart_policy: {condition: on-failure, delay: 5s, max_attempts: 2, window: 90s}
  h:
    image: x
    deploy:
      restart_policy: {condition: none}
  i:
    image: x
    restart: always
    deploy:
      restart_policy: {condition: none}
  j: {image: x}
]])
  local k = function(n) return s.components[n].restart.kind end
  t.eq(k("a"), "never"); t.eq(k("b"), "never"); t.eq(k("c"), "always"); t.eq(k("d"), "always")
  t.eq(k("e"), "on_failure"); t.eq(s.components.e.restart.limit, nil)
  t.eq(k("f"), "on_failure"); t.same(s.components.f.restart.limit, { restarts = 4, within = 3600 })
  t.eq(k("g"), "on_failure"); t.same(s.components.g.restart.limit, { restarts = 2, within = 90 })
  t.eq(s.components.g.restart.backoff:delay(3), 5)
  t.eq(k("h"), "never")
  t.eq(k("i"), "always")
  warned(w, "service i: 'deploy.restart_policy': ignored")
  t.match(src, 'local policy  = require "mw.policy"')
  t.match(src, 'local backoff = require "mw.backoff"')
  t.match(src, "restart = policy.on_failure { backoff = backoff.constant { delay = \"5s\" }, " ..
    "limit = { restarts = 2, within = \"1m30s\" } }")
  t.match(src, "Without 'restart' compose never restarts a service; here j gets mw's default policy")
end)

t.test("convert: ports in short and long syntax, small ranges expanded", function()
  local src, w, s = conv([[
services:
  web:
    image: x
    ports:
      - 80
      - "8080:8080"
      - "127.0.0.1:5432:5432"
      - "53:53/udp"
      - "[::1]:9000:9000"
      - "127.0.0.1::7000"
      - "3000-3002:4000-4002"
      - "6000-6001/udp"
      - target: 443
        published: "8443"
        host_ip: 127.0.0.1
        protocol: tcp
        mode: host
      - target: 81
      - "1000-1100"
      - "2000-2005:2000"
]])
  local p = s.components.web.ports
  local function show(x) return string.format("%s:%s:%d/%s", x.ip, tostring(x.host), x.container, x.proto) end
  local got = {}
  for i, x in ipairs(p) do got[i] = show(x) end
  t.same(got, {
    "0.0.0.0:nil:80/tcp", "0.0.0.0:8080:8080/tcp", "127.0.0.1:5432:5432/tcp", "0.0.0.0:53:53/udp",
    "::1:9000:9000/tcp", "127.0.0.1:nil:7000/tcp",
    "0.0.0.0:3000:4000/tcp", "0.0.0.0:3001:4001/tcp", "0.0.0.0:3002:4002/tcp",
    "0.0.0.0:nil:6000/udp", "0.0.0.0:nil:6001/udp",
    "127.0.0.1:8443:443/tcp", "0.0.0.0:nil:81/tcp",
  })
  warned(w, "service web: 'ports.mode' has no equivalent")
  warned(w, "service web: 'ports': no equivalent for a range of more than 20 ports")
  warned(w, "service web: 'ports': no equivalent for a host range")
  commented(src, "ports: 1000%-1100")
  commented(src, "ports: 2000%-2005:2000")
end)

t.test("convert: volumes (named, bind, tmpfs, long syntax) and anonymous ones refused", function()
  local src, w, s = conv([[
services:
  web:
    image: x
    volumes:
      - data:/var/lib/data
      - ./conf/app.conf:/etc/app.conf:ro
      - ./conf:/etc/conf:rw,z
      - /var/anon
      - type: bind
        source: conf
        target: /long/conf
        read_only: true
      - type: volume
        source: data
        target: /long/data
        volume: {nocopy: true}
      - type: tmpfs
        target: /cache
        tmpfs: {size: 1048576}
      - type: volume
        target: /anon2
    tmpfs:
      - /run:size=64m
volumes:
  data:
]])
  local v = s.components.web.volumes
  t.eq(#v, 7)
  t.same(v[1], { type = "volume", name = "data", target = "/var/lib/data", read_only = false })
  t.same(v[2], { type = "bind", source = PROJ .. "/conf/app.conf", target = "/etc/app.conf", read_only = true })
  t.same(v[3], { type = "bind", source = PROJ .. "/conf", target = "/etc/conf", read_only = false })
  t.same(v[4], { type = "bind", source = PROJ .. "/conf", target = "/long/conf", read_only = true })
  t.eq(v[5].type, "volume"); t.eq(v[5].target, "/long/data")
  t.same(v[6], { type = "tmpfs", target = "/cache", size = 1048576 })
  t.same(v[7], { type = "tmpfs", target = "/run", size = 64 * 1024 * 1024 })
  warned(w, "service web: 'volumes': the mount option 'z' has no equivalent")
  warned(w, "service web: 'volumes': an anonymous volume would be lost")
  warned(w, "service web: 'volumes.volume' has no equivalent")
  commented(src, "volumes: /var/anon")
  commented(src, "volumes: {target: /anon2, type: volume}")
  -- an undeclared named volume is worth a word
  local _, w2 = conv("services:\n  a:\n    image: x\n    volumes: [\"undeclared:/d\"]\n")
  warned(w2, "volume 'undeclared' is not declared")
end)

t.test("convert: static addresses, aliases, subnets, external networks and volumes", function()
  local src, w, s = conv([[
services:
  app:
    image: x
    networks:
      back: {ipv4_address: 172.28.0.10, aliases: [api]}
      corp:
      default: {ipv4_address: 10.1.1.1}
      plain: {ipv4_address: 10.3.3.3}
    volumes: [shared:/data, "other:/o:ro"]
networks:
  plain:
  back:
    ipam: {config: [{subnet: 172.28.0.0/16, gateway: 172.28.0.254}]}
  corp: {external: true, name: corp-net}
  odd:
    ipam: {config: [{subnet: 10.9.0.0/16}, {subnet: 10.10.0.0/16}]}
volumes:
  shared: {external: true}
  other: {external: true, name: real-other}
]])
  local c = s.components.app
  t.same(c.networks, { { name = "back", ipv4_address = "172.28.0.10", aliases = { "api" } },
                       { name = "corp", external = "corp-net" }, "plain" })
  t.same(s.networks.back.subnet, "172.28.0.0/16")
  t.same(s.networks.back.gateway, "172.28.0.254")
  t.same(s.networks.corp, { external = true, name = "corp-net" })
  t.eq(c.volumes[1].name, "shared"); t.eq(c.volumes[1].external, true)
  t.eq(c.volumes[2].name, "real-other"); t.eq(c.volumes[2].external, true); t.eq(c.volumes[2].read_only, true)
  -- what does not translate is named: an address on the stack's own network, two subnets
  warned(w, "service app: 'networks.default.ipv4_address' has no equivalent")
  warned(w, "network 'odd': 'ipam' has no equivalent")
  warned(w, "service app: 'networks.plain.ipv4_address' has no equivalent: the network declares no single ipam subnet")
  t.ok(not src:find("compose: network corp", 1, true), "the external network is translated, not a comment")
end)

t.test("convert: secrets from files; environment and external ones are kept as comments", function()
  local src, w, s = conv([[
services:
  app:
    image: x
    secrets:
      - pw
      - source: pw
        target: renamed
        mode: 0400
      - token
      - gone
secrets:
  pw: {file: ./pw.txt}
  token: {environment: TOKEN}
]])
  local got = {}
  for _, sec in ipairs(s.components.app.secrets) do got[sec.name] = sec.source end
  t.same(got, { pw = PROJ .. "/pw.txt", renamed = PROJ .. "/pw.txt" })
  warned(w, "service app: 'secrets.mode' has no equivalent")
  warned(w, "service app: 'secrets': secret 'token' is not a file")
  warned(w, "service app: 'secrets': no top%-level secret 'gone'")
  warned(w, "^secret 'token': 'environment' has no equivalent")
  commented(src, "secret token: environment: TOKEN")
  t.ok(not src:find("hunter2"), "a secret's content never appears")
end)

t.test("convert: networks, deploy resources, and the remaining fields", function()
  local src, w, s = conv([[
services:
  app:
    image: x
    networks:
      default:
      front: {aliases: [www]}
      back:
    deploy:
      replicas: 3
      resources:
        limits: {cpus: "0.5", memory: 256M}
        reservations: {memory: 64M}
    working_dir: /srv
    user: 1000
    labels: ["a.b=c", "flag"]
    hostname: app.local
    extra_hosts: ["gw:host-gateway", "db=10.0.0.2", "v6:::1"]
    stop_signal: SIGQUIT
    stop_grace_period: 1m5s
    init: on
    read_only: "yes"
    cap_add: [NET_ADMIN]
    cap_drop: [ALL]
    shm_size: 128m
    ulimits:
      nofile: {soft: 1024, hard: 2048}
      nproc: 512
  legacy:
    image: y
    mem_limit: 1g
    cpus: 2
    scale: 2
    deploy:
      resources:
        limits: {memory: 2g}
    extra_hosts:
      one: 10.0.0.1
      many: [10.0.0.2, 10.0.0.3]
    labels: {x: 1}
networks:
  front:
  back:
]])
  local c = s.components.app
  t.same(c.networks, { "back", { name = "front", aliases = { "www" } } })
  t.ok(not src:find("compose: networks.front.aliases", 1, true), "aliases translate")
  t.eq(c.scale, 3); t.eq(c.cpus, 0.5); t.eq(c.memory, 256 * 1024 * 1024)
  t.eq(c.memory_reservation, 64 * 1024 * 1024)
  t.eq(c.working_dir, "/srv"); t.eq(c.user, "1000")
  t.same(c.labels, { ["a.b"] = "c", flag = "" })
  t.eq(c.hostname, "app.local")
  t.same(c.extra_hosts, { "gw:host-gateway", "db:10.0.0.2", "v6:::1" })
  t.eq(c.stop_signal, "SIGQUIT"); t.eq(c.stop_grace, 65)
  t.eq(c.init, true); t.eq(c.read_only, true)
  t.same(c.cap_add, { "NET_ADMIN" }); t.same(c.cap_drop, { "ALL" })
  t.eq(c.shm_size, 128 * 1024 * 1024)
  t.same(c.ulimits, { nofile = { soft = 1024, hard = 2048 }, nproc = { soft = 512, hard = 512 } })
  local l = s.components.legacy
  t.eq(l.memory, 2 * 1024 ^ 3, "deploy's limit is read first; mem_limit is kept as a comment")
  warned(w, "service legacy: 'mem_limit': ignored: 'memory' is already set")
  commented(src, "mem_limit: 1g")
  t.eq(l.cpus, 2); t.eq(l.scale, 2)
  t.same(l.extra_hosts, { "many:10.0.0.2", "many:10.0.0.3", "one:10.0.0.1" })
  t.same(l.labels, { x = "1" })
end)

t.test("convert: service names are made valid component names, dependencies follow", function()
  local src, w, s = conv([[
services:
  Web.App: {image: x, depends_on: [DB]}
  DB: {image: y}
  db: {image: z}
  _x: {image: w}
]])
  t.ok(s.components["web-app"])
  t.ok(s.components.db and s.components["db-2"])
  t.ok(s.components.x)
  warned(w, "service 'Web.App' becomes component 'web%-app'")
  warned(w, "service '_x' becomes component 'x'")
  t.same(s.components["web-app"].depends_on, { db = "started" })
  t.eq(s.components.db.image, "y", "DB sorts first, so it keeps the plain name")
  t.match(src, '%-%- compose service "?Web.App"?')
  t.match(src, '%["web%-app"%] = {')
end)

t.test("convert: strings are quoted so any value survives", function()
  local _, _, s = conv([==[
services:
  app:
    image: x
    environment:
      QUOTES: 'say "hi" \ back'
      NEWLINE: "a\nb\tc"
      UTF8: "héllo wörld ✓"
      BRACKETS: "]] [[ --[["
      CTRL: "bell\a"
      lua-keyword: x
      and: y
]==])
  t.same(s.components.app.env, {
    QUOTES = 'say "hi" \\ back', NEWLINE = "a\nb\tc", UTF8 = "héllo wörld ✓",
    BRACKETS = "]] [[ --[[", CTRL = "bell\a", ["lua-keyword"] = "x", ["and"] = "y",
  })
end)

t.test("convert: paths are rewritten when the stack file goes elsewhere", function()
  local src, w, s = conv([[
services:
  app:
    build: ./app
    volumes: ["./conf:/conf:ro", "/tmp:/abs"]
    secrets: [pw]
secrets:
  pw: {file: pw.txt}
]], { out_dir = SCRATCH .. "/elsewhere" })
  t.match(src, 'build = "%.%./proj/app"')
  t.match(src, '"%.%./proj/conf:/conf:ro"')
  t.match(src, '"/tmp:/abs"')
  t.match(src, 'pw = "%.%./proj/pw.txt"')
  t.eq(s.components.app.build.context, PROJ .. "/app")
  warned(w, "the stack file is not beside the compose file")
end)

t.test("convert: the stack is named after the compose project", function()
  local src = conv("name: My_Project\nservices:\n  a: {image: x}\n")
  t.match(src, 'name = "my_project"')
  src = conv("services:\n  a: {image: x}\n")
  t.match(src, 'name = "proj"')
  src = conv("services:\n  a: {image: x}\n", { env = { COMPOSE_PROJECT_NAME = "fromenv" } })
  t.match(src, 'name = "fromenv"')
end)

t.test("convert: unusable compose files fail with one line", function()
  local cases = {
    { "- a\n- b\n", "^not a compose file: expected a mapping with 'services', got a list$" },
    { "just text\n", "got a string" },
    { "{}\n", "got an empty mapping" },
    { "version: '3'\n", "^no services" },
    { "services: {}\n", "^no services" },
    { "services: [a]\n", "'services' must be a mapping" },
    { "services:\n  web:\n", "^service web must be a mapping" },
    { "services:\n  web: {ports: [80]}\n", "^service web has neither 'image' nor 'build'$" },
    { "services:\n  web: {build: 'git@github.com:x/y.git'}\n", "is remote" },
    { "services:\n  web: {image: x, healthcheck: {test: [FOO, x]}}\n", "must start with CMD, CMD%-SHELL or NONE" },
    { "services:\n  web: {image: x, stop_grace_period: soon}\n", "bad duration" },
  }
  for _, c in ipairs(cases) do
    local src, err = conv(c[1])
    t.eq(src, nil, c[1])
    t.match(err, c[2], c[1])
  end
end)

t.test("convert: every unsupported key is reported and kept as a comment", function()
  local keys = { "expose", "links", "container_name", "tty", "x-custom" }
  local lines = { "services:", "  svc:", "    image: x" }
  local values = {
    privileged = "true", devices = "[/dev/fuse]", network_mode = "host", pid = "host",
    sysctls = "{net.core.somaxconn: 1024}", logging = "{driver: none}",
    expose = "[80]", links = "[db]", container_name = "fixed",
    security_opt = "[seccomp:unconfined]", tty = "true", ["x-custom"] = "{a: 1}",
  }
  for _, k in ipairs(keys) do lines[#lines + 1] = "    " .. k .. ": " .. values[k] end
  lines[#lines + 1] = "x-top: 1"
  local src, w = conv(table.concat(lines, "\n") .. "\n")
  for _, k in ipairs(keys) do
    local pat = k:gsub("%-", "%%-")
    warned(w, "^service svc: '" .. pat .. "' has no equivalent.*%(kept as a comment%)$")
    commented(src, "^%s+%-%- compose: " .. pat .. ": ")
  end
  warned(w, "^top%-level 'x%-top' has no equivalent")
  commented(src, "x%-top: 1")
end)

t.test("convert: host and kernel fields (issue 19) become stack fields", function()
  local _, _, s = conv([[
services:
  vpn:
    image: x
    privileged: true
    devices: ["/dev/net/tun:/dev/net/tun"]
    sysctls: ["net.ipv4.ip_forward=1"]
    dns: 127.0.0.53
    dns_search: [corp.internal]
    dns_opt: ["ndots:2"]
    security_opt: ["no-new-privileges:true"]
    group_add: [audio, 44]
    oom_score_adj: -500
    ipc: shareable
    pid: host
    mem_reservation: 32m
    logging:
      driver: local
      options: {max-size: 5m, max-file: 2}
    deploy:
      resources:
        reservations:
          devices:
            - driver: nvidia
              count: 1
              capabilities: [gpu]
  gpu:
    image: y
    gpus: all
  sidecar:
    image: z
    network_mode: "service:gpu"
  tool:
    image: z
    network_mode: host
]])
  local c = s.components.vpn
  t.eq(c.privileged, true)
  t.same(c.devices, { { host = "/dev/net/tun", container = "/dev/net/tun", permissions = "rwm" } })
  t.same(c.sysctls, { ["net.ipv4.ip_forward"] = "1" })
  t.same(c.dns, { "127.0.0.53" }); t.same(c.dns_search, { "corp.internal" }); t.same(c.dns_opt, { "ndots:2" })
  t.same(c.security_opt, { "no-new-privileges:true" })
  t.same(c.group_add, { "audio", "44" })
  t.eq(c.oom_score_adj, -500); t.eq(c.ipc, "shareable"); t.eq(c.pid, "host")
  t.eq(c.memory_reservation, 32 * 1024 * 1024)
  t.same(c.logging, { driver = "local", options = { ["max-size"] = "5m", ["max-file"] = "2" } })
  t.same(c.gpus, { count = 1, capabilities = { "gpu" }, driver = "nvidia" })
  t.same(s.components.gpu.gpus, { count = -1, capabilities = { "gpu" } })
  t.eq(s.components.sidecar.network_mode, "service:gpu")
  t.eq(s.components.sidecar.depends_on.gpu, "started", "shares gpu's namespace, so starts after it")
  t.eq(s.components.tool.network_mode, "host")
end)

-- The corpus ---------------------------------------------------------------------------------

-- What each corpus file must give: components, and the keys it must report as unsupported.
local EXPECT = {
  ["web-postgres-redis"] = { comps = 3 },
  ["wordpress-mysql"] = { comps = 2, unsupported = { "expose" } },
  ["nginx-proxy"] = { comps = 2, unsupported = { "expose" } },
  monitoring = { comps = 5, unsupported = { "expose" } },
  traefik = { comps = 3 },
  ["build-args"] = { comps = 4, unsupported = { "build.cache_from", "image" } },
  anchors = { comps = 3 },
  ["env-files"] = { comps = 2, unsupported = { "env_file" } },
  healthchecks = { comps = 8, unsupported = { "healthcheck.start_interval", "healthcheck" } },
  ["long-syntax"] = { comps = 1, unsupported = { "ports.mode", "secrets.uid", "volumes.bind.propagation", "tmpfs" } },
  deploy = { comps = 3, unsupported = { "deploy.placement", "deploy.update_config", "cpu_shares",
                                        "memswap_limit", "deploy.resources.reservations.cpus" } },
  unsupported = { comps = 4, unsupported = {
    "container_name", "x-notes", "tty", "stdin_open", "platform",
    "expose", "links", "driver_opts", "x-project-owner" } },
  names = { comps = 4 },
  ["django-celery"] = { comps = 5 },
  ["extends-files"] = { comps = 4 },
  ["include-split"] = { comps = 3 },
  ["go-api-stack"] = { comps = 3 },
  ["caddy-configs"] = { comps = 2 },
  ["host-tools"] = { comps = 2 },
  ["gpu-jobs"] = { comps = 2 },
  ["profiles-dev"] = { comps = 4 },
  ["jobs-migrate"] = { comps = 3 },
  ["logging-options"] = { comps = 3 },
  ["sysctls-tuning"] = { comps = 2 },
  ["fuse-mounts"] = { comps = 2 },
  ["pull-policies"] = { comps = 4 },
  ["minio-backup"] = { comps = 2 },
  ["mqtt-iot"] = { comps = 3 },
  ["search-ulimits"] = { comps = 2 },
  ["wireguard-vpn"] = { comps = 1 },
  ["grafana-content"] = { comps = 2, unsupported = { "content", "configs.mode" } },
}

local function corpus_dirs()
  local names = assert(fs.list(CORPUS))
  local out = {}
  for _, n in ipairs(names) do
    if n ~= "broken" and fs.stat(CORPUS .. "/" .. n .. "/compose.yaml") then out[#out + 1] = n end
  end
  table.sort(out)
  return out
end

local function import_corpus(name)
  local dir = CORPUS .. "/" .. name
  local text = assert(fs.read(dir .. "/compose.yaml"))
  local doc = decode(text)
  local src, w = import.convert(doc, { dir = dir, env = { HOME = "/root" }, file = "compose.yaml", text = text })
  return src, w, dir
end

t.test("corpus: at least 30 realistic compose files, each with expectations", function()
  local dirs = corpus_dirs()
  t.ok(#dirs >= 30, "only " .. #dirs .. " corpus files")
  for _, n in ipairs(dirs) do t.ok(EXPECT[n], "no expectations for corpus file " .. n) end
end)

for _, name in ipairs(corpus_dirs()) do
  t.test("corpus " .. name .. ": imports, passes mw check, reports what it leaves out", function()
    local src, w, dir = import_corpus(name)
    t.ok(src, "convert failed: " .. tostring(w))
    local s, err = stack.load(dir .. "/stack.lua", { source = src })
    t.ok(s, err)
    local want = EXPECT[name]
    local n = 0
    for _ in pairs(s.components) do n = n + 1 end
    for _ in pairs(s.excluded) do n = n + 1 end       -- profiled out: imported all the same
    t.eq(n, want.comps, "components")
    -- every warning about a key has its comment, and every comment its warning
    local comments = {}
    for line in src:gmatch("[^\n]+") do
      local key = line:match("^%s*%-%- compose: ([^:]+):")
      if key then comments[#comments + 1] = key end
    end
    for _, msg in ipairs(w) do
      local key = msg:match("^service [^:]+: '([^']+)'") or msg:match("^top%-level '([^']+)'")
        or msg:match("^%a+ [^:]+: '([^']+)' has no equivalent")
      if key then t.ok(has(comments, "^" .. key:gsub("%p", "%%%0")) or src:find(key, 1, true),
        name .. ": warning without a comment: " .. msg) end
    end
    for _, k in ipairs(want.unsupported or {}) do
      local pat = "'" .. k:gsub("%p", "%%%0") .. "'"
      t.ok(has(w, pat), name .. ": no warning for " .. k .. " in " .. table.concat(w, " | "))
      t.ok(src:find("-- compose: [^\n]*" .. k:gsub("%p", "%%%0")), name .. ": no comment for " .. k)
    end
    -- the output is deterministic
    t.eq(import_corpus(name), src)
  end)
end

t.test("corpus: values survive the trip", function()
  local function load(name)
    local src, _, dir = import_corpus(name)
    return assert(stack.load(dir .. "/stack.lua", { source = src }))
  end
  local s = load("env-files")
  t.eq(s.name, "envdemo")
  t.eq(s.components.web.image, "nginx:1.25.3", "from .env")
  t.eq(container_env(s, "web").LOG_FORMAT, "text", "from the env files, read when the stack loads")
  t.eq(container_env(s, "web").WELCOME, "Hello\nWorld")
  t.eq(s.components.web.env.GREETING, "cost is $5")
  t.eq(s.components.db.env.POSTGRES_PASSWORD, "s3cr3t pass")
  t.eq(s.components.db.image, "postgres:16")
  local _, aw = import_corpus("anchors")
  t.eq(#aw, 0, "x- fields used through their anchors draw no warning: " .. table.concat(aw, " | "))
  s = load("anchors")
  t.eq(s.components.api.env.LOG_LEVEL, "debug")
  t.eq(s.components.worker.env.TZ, "Europe/Berlin")
  t.eq(s.components.api.heartbeat.interval, 15)
  t.eq(s.components.worker.depends_on.api, "healthy")
  s = load("traefik")
  t.eq(s.components.whoami.scale, 2)
  t.eq(s.components.whoami.labels["traefik.http.routers.whoami.rule"], "Host(`whoami.localhost`) && PathPrefix(`/`)")
  s = load("healthchecks")
  t.eq(s.components.waits.depends_on.inherited, "started")
  t.eq(s.components["exec-list"].heartbeat.interval, 90)
  s = load("deploy")
  t.eq(s.components.worker.scale, 3)
  t.eq(s.components.worker.memory, 512 * 1024 * 1024)
  s = load("names")
  t.ok(s.components["api-server"] and s.components.web_app and s.components.internal)
end)

t.test("corpus: extends (same file and another) and include become Lua with the merged values", function()
  local src, w, dir = import_corpus("extends-files")
  local s = assert(stack.load(dir .. "/stack.lua", { source = src }))
  t.eq(#w, 0, table.concat(w, " | "))
  t.match(src, "local function base_app_base%(c%)")
  t.match(src, "\n    web = base_app_base {\n")
  t.match(src, "\n    %[\"worker%-mail\"%] = base_worker {\n")
  local web, worker, mail = s.components.web, s.components.worker, s.components["worker-mail"]
  t.eq(web.image, "registry.example.com/shop/app:4.2", "from the base in common.yaml")
  t.eq(web.env.LOG_FORMAT, "json")
  t.eq(worker.env.LOG_FORMAT, "text", "the extending service's own value wins")
  t.eq(worker.env.TZ, "UTC", "environment merges by key")
  t.eq(worker.env.CONCURRENCY, "4")
  t.eq(mail.command[6], "mail")
  t.eq(mail.env.CONCURRENCY, "4", "extends of an extends")
  t.eq(web.volumes[1].source, fs.realpath(dir) .. "/shared/uploads", "paths of common.yaml from its directory")
  t.eq(web.heartbeat.interval, 10)
  t.eq(web.ports[1].host, 8000)
  t.eq(s.components.db.image, "postgres:16-alpine")

  src, w, dir = import_corpus("include-split")
  s = assert(stack.load(dir .. "/stack.lua", { source = src }))
  t.eq(#w, 0, table.concat(w, " | "))
  t.match(src, "%-%- from db/compose.yaml %(include%)")
  local db = s.components.db
  t.eq(db.image, "mariadb:11")
  local binds = {}
  for _, v in ipairs(db.volumes) do binds[v.target] = v end
  t.eq(binds["/docker-entrypoint-initdb.d"].source, fs.realpath(dir) .. "/db/initdb",
    "an included file's paths are relative to its own directory")
  t.eq(s.components.notes.depends_on.db, "healthy")
  t.eq(s.components.cache.command[3], "64")
end)

t.test("convert: extends and include that cannot be resolved stop with one line", function()
  local d = tmp.dir()
  assert(fs.write_atomic(d .. "/other.yaml", "services:\n  base:\n    image: x\n"))
  assert(fs.write_atomic(d .. "/dup.yaml", "services:\n  web:\n    image: y\n"))
  local cases = {
    { "services:\n  a:\n    extends: b\n  b:\n    extends: a\n", "^service [ab]: extends makes a loop$" },
    { "services:\n  a:\n    extends: nope\n", "^service a: extends nope, which is not a service$" },
    { "services:\n  a:\n    extends: {file: other.yaml, service: nope}\n",
      "^service a: extends nope, which other.yaml does not define$" },
    { "services:\n  a:\n    extends: {file: missing.yaml, service: base}\n",
      "^cannot read missing.yaml: No such file or directory$" },
    { "include: [dup.yaml]\nservices:\n  web:\n    image: z\n",
      "^include dup.yaml: service 'web' is also defined in the including file$" },
    { "include: [missing.yaml]\nservices:\n  web:\n    image: z\n", "^cannot read missing.yaml" },
  }
  for _, c in ipairs(cases) do
    local src, err = import.convert(decode(c[1]), { dir = d, env = {} })
    t.eq(src, nil, c[1])
    t.match(err, c[2], c[1])
  end
  -- and the good case: an abstract base with no image
  local src = assert(import.convert(decode(
    "x-base: &b {restart: always}\nservices:\n  tmpl:\n    image: t\n  a:\n    extends: {file: other.yaml, service: base}\n" ..
    "    command: run\n"), { dir = d, env = {} }))
  t.match(src, "a = base_base {")
end)

t.test("README's compose table names every key the importer knows", function()
  local readme = assert(fs.read("README.md"))
  local section = readme:match("\n### Compose keys and their mw fields\n(.-)\n##")
  t.ok(section, "README has no section \"Compose keys and their mw fields\"")
  local named = {}
  for line in section:gmatch("[^\n]+") do
    local first = line:match("^| ([^|]+) |")
    if first then
      for k in first:gmatch("`([^`]+)`") do named[k] = true; named[k:match("^[^.]+")] = true end
    end
  end
  local compose = require "mw.compose"
  local keys = {}
  for k in pairs(compose.handlers) do if k ~= "add_volume" then keys[#keys + 1] = k end end
  for k in pairs(require("mw.importcx").WHY) do keys[#keys + 1] = k end
  for _, k in ipairs { "extends", "include", "name", "services", "volumes", "networks", "secrets", "configs",
                       "version" } do keys[#keys + 1] = k end
  table.sort(keys)
  for _, k in ipairs(keys) do t.ok(named[k], "README's compose table lacks " .. k) end
end)

local BROKEN = {
  ["syntax-error"] = { decode = "^line 4, column 11: mapping values are not allowed in this context$" },
  ["not-a-mapping"] = { convert = "^not a compose file: expected a mapping with 'services', got a list$" },
  ["empty"] = { convert = "got an empty document$" },
  ["no-services"] = { convert = "^no services" },
  ["no-image"] = { convert = "^service web has neither 'image' nor 'build'$" },
  ["missing-env-file"] = { convert = "^service web: env_file ./does%-not%-exist.env: No such file or directory$" },
  ["remote-build"] = { convert = "^service app: build context .* is remote" },
  ["bad-image"] = { check = "field 'image': bad image reference \"Example/Web:Latest\"" },
  ["missing-bind"] = { check = "bind mount source \"./data/mysql\" does not exist" },
}

t.test("corpus: broken files fail with one clear line", function()
  local names = assert(fs.list(CORPUS .. "/broken"))
  t.ok(#names >= 4)
  for _, f in ipairs(names) do
    local name = f:match("^(.*)%.yaml$")
    local want = BROKEN[name]
    t.ok(want, "no expectation for broken/" .. f)
    local path = CORPUS .. "/broken/" .. f
    local doc, err = yaml.decode(assert(fs.read(path)))
    if want.decode then
      t.eq(doc, nil, f); t.match(err, want.decode, f)
    else
      t.ok(doc ~= nil, f .. ": " .. tostring(err))
      local src, cerr = import.convert(doc, { dir = CORPUS .. "/broken", env = {} })
      if want.convert then
        t.eq(src, nil, f); t.match(cerr, want.convert, f)
      else
        t.ok(src, f .. ": " .. tostring(cerr))
        local s, lerr = stack.load(CORPUS .. "/broken/stack.lua", { source = src })
        t.eq(s, nil, f); t.match(lerr, want.check, f)
      end
    end
  end
end)

-- The command ------------------------------------------------------------------------------------

local function self_exe()
  local p = io.popen("readlink /proc/" .. core.pid() .. "/exe")
  local exe = p:read("l")
  p:close()
  return exe
end

local function sh(cmd)
  local code, out, err = run.program({ "/bin/sh", "-c", cmd }, { inherit = true, timeout = 60 })
  return code, out, err
end

t.test("mw import: stdout, -o, --force, and exit 2 with one line for broken files", function()
  local _
  local mw = self_exe()
  local root = os.getenv("MW_LUA_PATH")
  local env = root and ("MW_LUA_PATH=" .. root .. " ") or ""
  local code, out, err = sh(env .. mw .. " import " .. CORPUS .. "/wordpress-mysql/compose.yaml")
  t.eq(code, 0, err)
  t.match(out, "^%-%- Imported from compose.yaml")
  t.match(err, "^mw import: service db: 'expose' has no equivalent")

  local target = SCRATCH .. "/elsewhere/stack.lua"
  code, _, err = sh(env .. mw .. " import " .. CORPUS .. "/nginx-proxy/compose.yaml -o " .. target)
  t.eq(code, 0, err)
  t.match(err, "wrote .*stack.lua: 2 components, %d+ warnings\n$")
  code, out, err = sh(env .. mw .. " check " .. target)
  t.eq(code, 0, err)
  t.match(out, "stack nginx%-proxy")
  code, _, err = sh(env .. mw .. " import " .. CORPUS .. "/nginx-proxy/compose.yaml -o " .. target)
  t.eq(code, 2)
  t.match(err, "^mw import: .*stack.lua already exists %(use %-%-force to overwrite it%)\n$")
  code, _, err = sh(env .. mw .. " import " .. CORPUS .. "/nginx-proxy/compose.yaml --output " .. target .. " --force")
  t.eq(code, 0, err)
  os.remove(target)

  for _, f in ipairs(assert(fs.list(CORPUS .. "/broken"))) do
    code, out, err = sh(env .. mw .. " import " .. CORPUS .. "/broken/" .. f)
    t.eq(code, 2, f)
    t.eq(out, "", f)
    local _, lines = err:gsub("\n", "")
    t.eq(lines, 1, f .. ": " .. err)
    t.match(err, "^mw import: ", f)
  end
  _, _, err = sh(env .. mw .. " import " .. CORPUS .. "/broken/syntax-error.yaml")
  t.eq(err, "mw import: " .. CORPUS .. "/broken/syntax-error.yaml: line 4, column 11: " ..
    "mapping values are not allowed in this context\n")
  code, _, err = sh(env .. mw .. " import")
  t.eq(code, 2); t.match(err, "usage: mw import compose.yaml")
  code, _, err = sh(env .. mw .. " import " .. SCRATCH .. "/nothing.yaml")
  t.eq(code, 2); t.match(err, "^mw import: cannot read .*nothing.yaml: No such file")
end)

-- Runs `mw <args>` in a child started in dir, killed after timeout seconds (so a test of an
-- attack cannot hang) -> exit code ("timeout" if it was killed), stdout, stderr, seconds taken.
local function mw_child(args, dir, timeout)
  return run.mw(args, { bin = self_exe(), env = { "PWD=" .. dir }, cwd = dir, timeout = timeout })
end

local function one_line(err, what)
  local _, n = err:gsub("\n", "")
  t.eq(n, 1, what .. ": one line on stderr: " .. err:sub(1, 300))
end

t.test("yaml: a 1 MB scalar aliased 100 times is refused by its expanded size, at once", function()
  t.eq(yaml.max_bytes, 16 * 1024 * 1024)
  local function bomb(copies)
    local lines = { "services:", "  web:", "    image: busybox", "    environment:",
                    "      A0: &big " .. string.rep("x", 1024 * 1024) }
    for i = 1, copies do lines[#lines + 1] = "      A" .. i .. ": *big" end
    return table.concat(lines, "\n") .. "\n"
  end
  local t0 = os.clock()
  local v, err = yaml.decode(bomb(100))
  t.eq(v, nil, "106 MB once expanded")
  t.eq(err, "line 20, column 12: document too large: more than 16 MiB of text once aliases are expanded (an alias bomb?)")
  t.ok(os.clock() - t0 < 2, "took " .. (os.clock() - t0) .. "s")
  -- under the limit the aliases are fine, and a mapping's bytes count each time it is aliased
  local ok = yaml.decode(bomb(10))
  t.eq(#ok.services.web.environment.A10, 1024 * 1024)
  local keys = { "a: &m {k1: " .. string.rep("y", 1024 * 1024) .. "}" }
  for i = 1, 20 do keys[#keys + 1] = "b" .. i .. ": *m" end
  v, err = yaml.decode(table.concat(keys, "\n"))
  t.eq(v, nil)
  t.match(err, "more than 16 MiB of text")

  -- the command: one line and exit 2, where it wrote a 106 MB stack.lua in 33 s
  local d = SCRATCH .. "/bomb"
  assert(fs.mkdirp(d))
  assert(fs.write_atomic(d .. "/compose.yaml", bomb(100)))
  local code, out, err2, took = mw_child({ "import", "compose.yaml", "-o", "stack.lua" }, d, 20)
  t.eq(code, 2, "exit; stderr: " .. err2:sub(1, 300))
  t.eq(out, "")
  one_line(err2, "alias bomb")
  t.match(err2, "^mw import: compose.yaml: line 20, column 12: document too large: more than 16 MiB")
  t.ok(took < 10, string.format("took %.1fs", took))
  t.ok(not fs.stat(d .. "/stack.lua"), "nothing written")
end)

t.test("interpolation: nesting is bounded (32), and so is the text it makes", function()
  t.eq(import.MAX_NESTING, 32)
  local function nest(n) return string.rep("${X:-", n) .. "v" .. string.rep("}", n) end
  local src = conv("services:\n  web:\n    image: busybox\n    environment:\n      A: '" .. nest(32) .. "'\n")
  t.match(src, 'A = "v"', "32 levels are fine")
  local v, err = conv("services:\n  web:\n    image: busybox\n    environment:\n      A: '" .. nest(33) .. "'\n")
  t.eq(v, nil)
  t.eq(err, "services.web.environment.A: ${...} nested deeper than 32 levels")
  -- 20 000 levels: refused at once (it never finished: each level scanned the rest again)
  local t0 = os.clock()
  v, err = conv("services:\n  web:\n    image: busybox\n    environment:\n      A: '" .. nest(20000) .. "'\n")
  t.eq(v, nil)
  t.match(err, "nested deeper than 32 levels$")
  t.ok(os.clock() - t0 < 1, "took " .. (os.clock() - t0) .. "s")
  -- a 1 KB variable used 20 000 times is 20 MB
  t.eq(import.MAX_EXPANDED, 16 * 1024 * 1024)
  v, err = conv("services:\n  web:\n    image: busybox\n    environment:\n      A: '" .. string.rep("$X", 20000) .. "'\n",
    { env = { X = string.rep("k", 1024) } })
  t.eq(v, nil)
  t.eq(err, "interpolation makes more than 16 MiB of text")
  -- one line only, even for a long unterminated value
  v, err = conv("services:\n  web:\n    image: busybox\n    environment:\n      A: '${X:-" .. string.rep("z", 5000) .. "'\n")
  t.eq(v, nil)
  t.match(err, "unterminated %${")
  t.ok(#err < 300, #err .. " bytes")

  -- the command, in a child that cannot hang the test
  local d = SCRATCH .. "/nest"
  assert(fs.mkdirp(d))
  assert(fs.write_atomic(d .. "/compose.yaml", "services:\n  web:\n    image: busybox\n    environment:\n      A: '"
    .. nest(20000) .. "'\n"))
  local code, out, err2, took = mw_child({ "import", "compose.yaml" }, d, 20)
  t.eq(code, 2, "exit; stderr: " .. err2:sub(1, 300))
  t.eq(out, "")
  one_line(err2, "deep nesting")
  t.eq(err2, "mw import: compose.yaml: services.web.environment.A: ${...} nested deeper than 32 levels\n")
  t.ok(took < 10, string.format("took %.1fs", took))
end)

t.test("convert: the env files read, and which of their values the source holds", function()
  local files = { [".env"] = "TAG=1.36\nPW=hunter2\nUNUSED=zzz\n", ["app.env"] = "API_KEY=s3cret\nBARE\nOVER=1\n" }
  local src, _, sources = import.convert(decode([[
services:
  web:
    image: "busybox:${TAG}"
    env_file: [app.env]
    environment:
      A: "${PW}"
      OVER: "from compose"
]]), { dir = PROJ, env = {}, read = function(p)
    local rel = p:sub(#PROJ + 2)
    if files[rel] then return files[rel] end
    return nil, p .. ": No such file or directory"
  end })
  t.ok(src)
  -- app.env is named by env_file, not copied: neither a source of values nor of the mode
  t.same(sources.read, { PROJ .. "/.env" })
  t.same(sources.env_values, {
    { path = PROJ .. "/.env", names = { "PW", "TAG" } },
  })
  t.match(src, 'env_file = "%./app%.env",')
  t.ok(not src:find("s3cret", 1, true), "app.env's value is not in the source")
  -- the process environment wins over .env: then the value did not come from the file
  _, _, sources = import.convert(decode("services:\n  web:\n    image: \"busybox:${TAG}\"\n"),
    { dir = PROJ, env = { TAG = "1" }, read = function(p)
      if p == PROJ .. "/.env" then return files[".env"] end
      return nil, "no"
    end })
  t.same(sources.env_values, {})
end)

t.test("mw import: values from env files are named, never shown; the stack file is as private as its sources", function()
  local d = SCRATCH .. "/private"
  assert(fs.mkdirp(d))
  assert(fs.write_atomic(d .. "/compose.yaml", [[
services:
  web:
    image: "busybox:${TAG}"
    env_file: [app.env]
    environment:
      A: "${PW}"
      OVER: "from compose"
]], 420))
  assert(fs.write_atomic(d .. "/.env", "TAG=1.36\nPW=hunter2\nUNUSED=zzz\n", 384))        -- 0600
  assert(fs.write_atomic(d .. "/app.env", "API_KEY=s3cret\nBARE\nOVER=1\n", 416))        -- 0640
  assert(fs.chmod(d .. "/.env", 384)); assert(fs.chmod(d .. "/app.env", 416))
  local _, umask = sh("umask")
  umask = tonumber(umask:match("%d+"), 8)

  local code, out, err = mw_child({ "import", "compose.yaml", "-o", "stack.lua" }, d, 30)
  t.eq(code, 0, err)
  t.eq(out, "")
  t.eq(fs.stat(d .. "/stack.lua").mode, 384 & ~umask, "a 0600 .env gives a 0600 stack.lua")
  t.eq(err, "mw import: values from .env written into stack.lua: PW, TAG\n" ..
            "mw import: wrote stack.lua: 1 component, 0 warnings; mode 0600, as private as .env\n")
  for _, secret in ipairs { "hunter2", "s3cret", "1.36", "zzz" } do
    t.ok(not err:find(secret, 1, true), "no value on stderr: " .. secret)
  end
  t.match(fs.read(d .. "/stack.lua"), 'A = "hunter2"', "the value is in the file")
  t.ok(not fs.read(d .. "/stack.lua"):find("s3cret", 1, true), "an env_file's value is not")
  -- and the stack file loads it from app.env, a secret
  local ls = assert(stack.load(d .. "/stack.lua"))
  t.eq(container_env(ls, "web").API_KEY, "s3cret")
  t.eq(container_env(ls, "web").OVER, "from compose", "environment wins over env_file")

  -- the most private source of values decides: app.env (0640) is only named, so it does not
  assert(fs.chmod(d .. "/.env", 420))
  code, _, err = mw_child({ "import", "compose.yaml", "-o", "stack.lua", "--force" }, d, 30)
  t.eq(code, 0, err)
  t.eq(fs.stat(d .. "/stack.lua").mode, 420 & ~umask)
  t.match(err, "wrote stack.lua: 1 component, 0 warnings\n$")
  -- and the compose file counts too
  assert(fs.chmod(d .. "/app.env", 420)); assert(fs.chmod(d .. "/compose.yaml", 384))
  code, _, err = mw_child({ "import", "compose.yaml", "-o", "stack.lua", "--force" }, d, 30)
  t.eq(code, 0, err)
  t.eq(fs.stat(d .. "/stack.lua").mode, 384 & ~umask)
  t.match(err, "; mode 0600, as private as compose.yaml\n$")
  -- all 0644: 0644, and the line as before
  assert(fs.chmod(d .. "/compose.yaml", 420))
  code, _, err = mw_child({ "import", "compose.yaml", "-o", "stack.lua", "--force" }, d, 30)
  t.eq(code, 0, err)
  t.eq(fs.stat(d .. "/stack.lua").mode, 420 & ~umask)
  t.match(err, "wrote stack.lua: 1 component, 0 warnings\n$")
  -- to stdout: the same names
  code, out, err = mw_child({ "import", "compose.yaml" }, d, 30)
  t.eq(code, 0, err)
  t.match(out, "^%-%- Imported from compose.yaml")
  t.eq(err, "mw import: values from .env written into the output: PW, TAG\n")
end)

t.test("mw import: a FIFO as the compose file, an env_file or .env is refused at once (exit 2, one line)", function()
  local d = SCRATCH .. "/fifo"
  assert(fs.mkdirp(d))
  t.eq(sh("mkfifo " .. d .. "/compose.yaml " .. d .. "/app.env"), 0, "mkfifo")
  -- nothing ever writes to them: an import that opened one for reading would wait forever
  local code, out, err = mw_child({ "import", "compose.yaml" }, d, 30)
  t.eq(code, 2, err)
  t.eq(out, "")
  t.eq(err, "mw import: cannot read compose.yaml: not a regular file (a FIFO)\n")
  assert(os.remove(d .. "/compose.yaml"))
  assert(fs.write_atomic(d .. "/compose.yaml", "services:\n  web:\n    image: busybox\n    env_file: [app.env]\n", 420))
  code, out, err = mw_child({ "import", "compose.yaml" }, d, 30)
  t.eq(code, 2, err)
  t.eq(out, "")
  t.eq(err, "mw import: compose.yaml: service web: env_file app.env: not a regular file (a FIFO)\n")
  -- required: false does not skip it silently either: it is there, and not a file
  assert(fs.write_atomic(d .. "/compose.yaml",
    "services:\n  web:\n    image: busybox\n    env_file:\n      - path: app.env\n        required: false\n", 420))
  code, out, err = mw_child({ "import", "compose.yaml" }, d, 30)
  t.eq(code, 2, err)
  t.eq(out, "")
  t.match(err, "env_file app.env: not a regular file %(a FIFO%)\n$")
  assert(os.remove(d .. "/app.env"))
  t.eq(sh("mkfifo " .. d .. "/.env"), 0, "mkfifo .env")
  assert(fs.write_atomic(d .. "/compose.yaml", "services:\n  web:\n    image: busybox\n", 420))
  code, out, err = mw_child({ "import", "compose.yaml" }, d, 30)
  t.eq(code, 2, err)
  t.eq(out, "")
  t.eq(err, "mw import: compose.yaml: .env: not a regular file (a FIFO)\n")
  assert(os.remove(d .. "/.env"))
  -- a directory given as the compose file: the same
  code, out, err = mw_child({ "import", "." }, d, 30)
  t.eq(code, 2, err)
  t.eq(out, "")
  t.eq(err, "mw import: cannot read .: not a regular file (a directory)\n")
end)

t.test("cleanup", function()
  assert(sh("rm -rf " .. SCRATCH) == 0)
end)

os.exit(t.run())
