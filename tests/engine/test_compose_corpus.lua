-- Compose files of the corpus (tests/compose) imported and brought up by `mw run`: every
-- component reaches healthy. Nothing here may pull, so each file's services are rewritten to the
-- test's busybox image serving httpd, with a health check against it; the rest (depends_on
-- conditions, extends and include, configs, volumes, env, sysctls, ulimits, logging) stays as
-- written. Also: a config file is in its container, read-only, and its edit recreates it.
local t = require "t"
local core = require "mw.core"
local fs = require "mw.fs"
local yaml = require "mw.yaml"
local cjson = require "cjson"
local import = require "mw.import"
local E = require "engine"

local e = E.engine()

local ROOT = (arg and arg[0] or ""):match("^(.*)/tests/engine/[^/]*$") or "."
local NULL = yaml.null

-- JSON is YAML: a decoded document written back as JSON, null kept.
local function to_json(v)
  if v == NULL then return cjson.null end
  if type(v) ~= "table" then return v end
  local out = {}
  for k, x in pairs(v) do out[k] = to_json(x) end
  return out
end

-- Keys that cannot work here: fixed host ports (the harness gives free ones only), users and
-- read-only roots the busybox image lacks, and what would pull or build.
local DROP = { "ports", "user", "read_only", "init", "entrypoint", "build", "pull_policy" }

local function localize(doc, extra, drop)
  if type(doc.services) ~= "table" then return end
  for n, svc in pairs(doc.services) do
    for _, k in ipairs(DROP) do svc[k] = nil end
    for _, k in ipairs(drop or {}) do svc[k] = nil end
    svc.image = E.image()
    svc.command = E.httpd_cmd(extra and extra[n])
    -- generous: on a loaded machine an exec probe alone can take seconds; healthy comes with
    -- the first good answer, so this costs nothing when the machine is quiet
    svc.healthcheck = { test = { "CMD", "wget", "-qO-", "http://127.0.0.1:8089/debug/vars" },
                        interval = "1s", timeout = "20s", retries = 30, start_period = "170s" }
  end
end

-- Copies tests/compose/<which> to a temp dir, rewrites its YAML files (the main one and those
-- it includes or extends), imports it and writes stack.lua -> path, stack name, component names.
local function corpus(which, extra, drop)
  local name = (E.run_id .. "-" .. which):lower():sub(1, 60)
  E.stacks[#E.stacks + 1] = name
  local d = E.tmpdir()
  assert(os.execute(string.format("cp -R '%s/tests/compose/%s/.' '%s/'", ROOT, which, d)), "cp failed")
  local p = io.popen("cd '" .. d .. "' && find . -name '*.yaml'")
  local files = {}
  for f in p:lines() do files[#files + 1] = f end
  p:close()
  for _, f in ipairs(files) do
    local doc = yaml.decode(assert(fs.read(d .. "/" .. f)))
    if type(doc) == "table" and doc.services then
      localize(doc, extra, drop)
      if f == "./compose.yaml" then doc.name = name end
      assert(fs.write_atomic(d .. "/" .. f, cjson.encode(to_json(doc)), 420))
    end
  end
  local text = assert(fs.read(d .. "/compose.yaml"))
  local src, w = import.convert(assert(yaml.decode(text)), { dir = d, file = "compose.yaml", text = text })
  assert(src, w)
  local file = d .. "/stack.lua"
  assert(fs.write_atomic(file, src, 420))
  local s = assert(require("mw.stack").load(file))
  return file, name, s.order, src, d
end

local function healthy_all(h, names, from, timeout)
  local seen = {}
  local deadline = core.now() + (timeout or 180)
  while true do
    for i, ev in ipairs(h.events()) do
      if i > (from or 0) and ev.event == "healthy" and ev.component then seen[ev.component] = true end
    end
    local missing = {}
    for _, n in ipairs(names) do if not seen[n] then missing[#missing + 1] = n end end
    if #missing == 0 then return end
    if core.now() > deadline then error("not healthy: " .. table.concat(missing, ", ") .. "; log:\n" .. h.text(), 2) end
    core.sleep(0.2)
  end
end

local function up_and_down(which, check, extra, drop)
  local file, stack, names, src, dir = corpus(which, extra, drop)
  local t0 = core.now()
  local h = E.mw({ "run", "--log-format", "json", file })
  healthy_all(h, names)
  print(string.format("# %s: %d components healthy in %.1fs", which, #names, core.now() - t0))
  if check then check(stack, h, src, dir, file) end
  h.stop()
  local code, out = E.mw_sync({ "destroy", "--stack", stack, "--volumes" })
  t.eq(code, 0, out)
end

local function one(stack, comp)
  return E.wait_running(stack, { comp })[comp][1]
end

t.test("corpus go-api-stack (web + db + cache, health-gated) comes up healthy", function()
  up_and_down("go-api-stack", function(stack)
    local info = assert(e:inspect(one(stack, "postgres").Id))
    t.eq(info.HostConfig.ShmSize, 256 * 1024 * 1024, "shm_size reached the container")
  end)
end)

t.test("corpus caddy-configs: configs are in the container, read-only, and an edit recreates", function()
  up_and_down("caddy-configs", function(stack, h, src, dir)
    t.match(src, 'configs = {')
    local x = one(stack, "backend")
    local code, out = e:exec(x.Id, { "cat", "/app/config/settings.json" })
    t.eq(code, 0, out)
    t.eq(out, assert(fs.read(dir .. "/backend.env.json")))
    code, out = e:exec(x.Id, { "cat", "/settings.json" })
    t.eq(code, 0, out)
    t.match(out, "max_upload_mb")
    code, out = e:exec(x.Id, { "sh", "-c", "echo x > /app/config/settings.json" })
    t.ok(code ~= 0, "the config is read-only: " .. tostring(out))
    t.match(out, "Read%-only file system")
    local c = one(stack, "caddy")
    code, out = e:exec(c.Id, { "head", "-1", "/etc/caddy/Caddyfile" })
    t.eq(code, 0, out)
    t.eq(out, ":80 {\n")
    -- the file's content is in the config hash: an edit and a reload (SIGHUP) replace backend only
    local mark = #h.events()
    assert(fs.write_atomic(dir .. "/backend.env.json", '{"max_upload_mb": 50}\n', 420))
    h.p:kill("HUP")
    h.wait_event({ event = "replace", component = "backend" }, 60, mark)
    h.wait_event({ event = "healthy", component = "backend" }, 60, mark)
    x = one(stack, "backend")
    code, out = e:exec(x.Id, { "cat", "/settings.json" })
    t.eq(code, 0, out)
    t.eq(out, '{"max_upload_mb": 50}\n')
    for i, ev in ipairs(h.events()) do
      t.ok(i <= mark or not (ev.event == "replace" and ev.component == "caddy"), "caddy was not replaced")
    end
  end)
end)

t.test("corpus extends-files (a base in another file, an extends of an extends) comes up healthy", function()
  up_and_down("extends-files", function(stack, _, src)
    t.match(src, "web = base_app_base {")
    local info = assert(e:inspect(one(stack, "worker-mail").Id))
    local env = t.env_map(info.Config.Env)
    t.eq(env.LOG_FORMAT, "text", "from worker")
    t.eq(env.TZ, "UTC", "from app-base in common.yaml")
  end)
end)

t.test("corpus include-split (services from included files) comes up healthy", function()
  up_and_down("include-split", function(stack)
    local x = one(stack, "db")
    local code, out = e:exec(x.Id, { "ls", "/docker-entrypoint-initdb.d" })
    t.eq(code, 0, out)
    t.eq(out, "01-schema.sql\n", "the included file's bind mount, from its own directory")
  end)
end)

t.test("corpus sysctls-tuning (sysctls, memory limit and reservation) comes up healthy", function()
  up_and_down("sysctls-tuning", function(stack)
    local x = one(stack, "redis")
    local code, out = e:exec(x.Id, { "cat", "/proc/sys/net/core/somaxconn" })
    t.eq(code, 0, out)
    t.eq(out, "4096\n")
    local info = assert(e:inspect(x.Id))
    t.eq(info.HostConfig.MemoryReservation, 256 * 1024 * 1024)
    t.eq(info.HostConfig.Memory, 512 * 1024 * 1024)
    code, out = e:exec(one(stack, "haproxy").Id, { "cat", "/proc/sys/net/ipv4/tcp_tw_reuse" })
    t.eq(code, 0, out)
    t.eq(out, "1\n")
  end, nil, { "oom_score_adj", "ulimits" })   -- this engine cannot lower an OOM score or raise nofile to 65536
end)

t.test("corpus logging-options (json-file capped, local, none) comes up healthy", function()
  up_and_down("logging-options", function(stack)
    local info = assert(e:inspect(one(stack, "web").Id))
    t.eq(info.HostConfig.LogConfig.Type, "json-file")
    t.eq(info.HostConfig.LogConfig.Config["max-size"], "5m")
    info = assert(e:inspect(one(stack, "sidecar").Id))
    t.eq(info.HostConfig.LogConfig.Type, "none")
  end)
end)

os.exit(E.run(t))
