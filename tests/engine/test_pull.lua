-- Issue 19: pull policies against a registry on loopback. The registry is Debian's
-- docker-registry binary in a FROM-scratch image this test builds, published on 127.0.0.1 on
-- an ephemeral port; images are pushed to it with the engine and pulled back by mw. Nothing
-- leaves the machine.
local t = require "t"
local E = require "engine"
local fs = require "mw.fs"
local tar = require "mw.tar"
local docker = require "mw.docker"

local e = E.engine()
local LABELS = { ["used-by"] = "millwright", ["mw.test"] = E.run_id }

local function build(dir, tag)
  local id, err = e:build { context_tar = assert(tar.pack(dir)), tag = tag, labels = LABELS }
  assert(id, err)
  return id
end

local function sh(cmd)
  local ok = os.execute(cmd .. " >/dev/null 2>&1")
  return ok
end

-- The registry: binary, the C library it links and a config with no auth, in a scratch image.
local registry_port
local function registry()
  if registry_port then return registry_port end
  local d = E.tmpdir()
  assert(sh("cp -L /usr/bin/docker-registry " .. d .. "/registry"), "docker-registry is not installed (make deps)")
  assert(sh("cp -L /lib/x86_64-linux-gnu/libc.so.6 " .. d .. "/libc.so.6"))
  assert(sh("cp -L /lib64/ld-linux-x86-64.so.2 " .. d .. "/ld.so"))
  assert(fs.write_atomic(d .. "/config.yml", [[
version: 0.1
storage:
  filesystem:
    rootdirectory: /var/lib/registry
http:
  addr: 0.0.0.0:5000
]]))
  assert(fs.write_atomic(d .. "/Dockerfile", table.concat({
    "FROM scratch",
    "COPY registry /bin/registry",
    "COPY libc.so.6 /lib/x86_64-linux-gnu/libc.so.6",
    "COPY ld.so /lib64/ld-linux-x86-64.so.2",
    "COPY config.yml /etc/registry.yml",
    'ENTRYPOINT ["/bin/registry", "serve", "/etc/registry.yml"]',
  }, "\n") .. "\n"))
  local img = build(d, "mw-test-" .. E.run_id .. ":registry")
  local spec = docker.container_spec {
    image = img, labels = LABELS, ports = { { container = 5000, ip = "127.0.0.1" } },
  }
  local id = assert(e:create("mw-test-" .. E.run_id .. "-registry", spec))
  assert(e:start(id))
  local info = assert(e:inspect(id))
  registry_port = assert(tonumber(info.NetworkSettings.Ports["5000/tcp"][1].HostPort))
  t.wait_for(function()
    local p = io.popen("curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:" .. registry_port .. "/v2/")
    local code = p:read("a"); p:close()
    return code == "200"
  end, 30, "the loopback registry answering /v2/")
  return registry_port
end

-- Pushes local image `src` to the registry as `repo:tag` and removes the local name, or points
-- it back at image `stale` (what a host that pulled earlier still has) -> ref.
local function push(src, repo, tag, stale)
  local ref = string.format("127.0.0.1:%d/%s:%s", registry(), repo, tag)
  assert(sh("docker tag " .. src .. " " .. ref), "docker tag")
  assert(sh("docker push " .. ref), "docker push " .. ref)
  assert(sh("docker rmi " .. ref), "docker rmi " .. ref)
  if stale then assert(sh("docker tag " .. stale .. " " .. ref), "docker tag") end
  return ref
end

-- A second image unlike E.image(): the same busybox plus a file saying which it is.
local function variant(word)
  local d = E.tmpdir()
  assert(fs.write_atomic(d .. "/which", word .. "\n"))
  assert(fs.write_atomic(d .. "/Dockerfile", "FROM " .. E.image() .. "\nCOPY which /which\n"))
  return build(d, "mw-test-" .. E.run_id .. ":" .. word)
end

local function image_of(stack, comp)
  local by = E.wait_running(stack, { comp }, 90)
  return assert(e:inspect(by[comp][1].Id)).Image
end

t.test("pull: missing pulls once, keeps what it has; --pull always fetches the newer one; never refuses", function()
  local repo = "mwpull-" .. E.run_id
  local ref = push(E.image(), repo, "v")
  local first = assert(e:image_inspect(E.image())).Id
  local file, stack = E.stack("pull", ([[
return { name = "NAME", components = {
  app = { image = "REF", command = { "sleep", "3600" } },
} }
]]):gsub("REF", ref))
  -- missing: not on the engine, so pulled, with the engine's progress shown
  local h = E.mw({ "run", "--log-format", "json", file })
  local ev = h.wait_event({ event = "pull", component = "app" }, 60)
  t.match(ev.msg, "pulling image " .. ref:gsub("%p", "%%%0"))
  t.eq(image_of(stack, "app"), first)
  t.eq(h.stop(), 0)
  -- a newer image behind the same tag
  local second = variant("second")
  push(second, repo, "v", first)
  -- missing again: the image is here, nothing pulled, the container kept
  h = E.mw({ "run", "--log-format", "json", file })
  h.wait_event({ event = "adopted", component = "app" }, 60)
  t.eq(image_of(stack, "app"), first)
  for _, x in ipairs(h.events()) do t.ok(x.event ~= "pull", "no pull with the image present: " .. tostring(x.msg)) end
  t.eq(h.stop(), 0)
  -- --pull always: pulled, and the container recreated on the newer image
  h = E.mw({ "run", "--pull", "always", "--log-format", "json", file })
  ev = h.wait_event({ event = "pull", component = "app" }, 60)
  t.match(ev.msg, "pull = \"always\"")
  t.wait_for(function()
    local by = E.containers(stack)
    local c = by.app and by.app[1]
    return c and c.State == "running" and assert(e:inspect(c.Id)).Image == second
  end, 60, "the component on the newer image")
  t.eq(h.stop(), 0)
  assert(e:image_remove(ref, true))
  -- never: the image is gone from the engine, so the start fails with one clear reason
  local nfile = E.stack("never", ([[
return { name = "NAME", components = {
  app = { image = "REF", command = { "sleep", "3600" }, pull = "never",
          restart = function(f) if f.reason == "start_failed" then return "give_up" end return "restart", "1s" end },
} }
]]):gsub("REF", ref))
  h = E.mw({ "run", "--log-format", "json", nfile })
  local g = h.wait_event({ event = "gave_up", component = "app" }, 60)
  t.match(g.msg, 'pull = "never"')
  h.stop()
end)

t.test("build.pull: a build refreshes its base from the registry", function()
  local repo = "mwbase-" .. E.run_id
  local base = push(E.image(), repo, "1")
  local file, stack, dir = E.stack("bpull", [[
return { name = "NAME", components = {
  app = { build = { context = "ctx", pull = true }, command = { "sh", "-c", "cat /which 2>/dev/null || echo none; sleep 3600" } },
} }
]])
  assert(fs.mkdirp(dir .. "/ctx"))
  assert(fs.write_atomic(dir .. "/ctx/Dockerfile", "FROM " .. base .. "\nRUN true\n"))
  local h = E.mw({ "run", "--log-format", "json", file })
  local first = image_of(stack, "app")
  t.eq(h.stop(), 0)
  push(variant("newbase"), repo, "1")
  h = E.mw({ "run", "--log-format", "json", file })
  t.wait_for(function()
    local by = E.containers(stack)
    local c = by.app and by.app[1]
    return c and c.State == "running" and assert(e:inspect(c.Id)).Image ~= first
  end, 90, "the component rebuilt on the newer base")
  t.eq(h.stop(), 0)
  assert(e:image_remove(base, true))
end)

os.exit(E.run(t))
