-- scripts/engine.sh: a dockerd started right after the previous one was stopped answers, and
-- a stale containerd socket does not stop it (issue 15: CI once ran with no engine because the
-- new dockerd timed out on the old containerd's socket). Runs only when this run started the
-- engine (MW_TEST_ENGINE=started, set by scripts/test.sh): an engine of the host's is not ours.
local t = require "t"
local fs = require "mw.fs"

local function sh(cmd)
  local p = assert(io.popen(cmd .. " 2>&1"))
  local out = p:read("a")
  local ok, _, code = p:close()
  return ok and 0 or code, out
end

local function answers()
  return sh("timeout 5 docker version --format '{{.Server.Version}}'") == 0
end

local function gone(pidfile)
  local f = io.open(pidfile)
  if not f then return true end
  local pid = f:read("l")
  f:close()
  return sh("kill -0 " .. tonumber(pid)) ~= 0
end

local CONTAINERD_PID = "/var/run/docker/containerd/containerd.pid"

if os.getenv("MW_TEST_ENGINE") ~= "started" then
  t.skip("engine.sh down then up at once", "the engine was not started by this run")
  t.skip("engine.sh up over a stale containerd socket", "the engine was not started by this run")
  os.exit(t.run())
end

t.test("engine.sh down then up at once: down waits for dockerd and containerd, up answers", function()
  local pidfile = "/run/mw-test-dockerd.pid"
  local dockerd = assert(io.open(pidfile)):read("l")
  local cf = io.open(CONTAINERD_PID)
  local containerd = cf and cf:read("l")
  if cf then cf:close() end
  t.ok(containerd, "a containerd pid file while dockerd runs")
  local code, out = sh("scripts/engine.sh down")
  t.eq(code, 0, out)
  -- down returns only when both processes are gone
  t.ok(sh("kill -0 " .. tonumber(dockerd)) ~= 0, "dockerd " .. dockerd .. " still alive after down")
  t.ok(sh("kill -0 " .. tonumber(containerd)) ~= 0, "containerd " .. containerd .. " still alive after down")
  t.ok(not answers(), "an engine answers after down")
  code, out = sh("scripts/engine.sh up")
  t.eq(code, 0, out)
  t.match(out, "started")
  t.ok(answers(), "the new dockerd answers")
  t.ok(not gone(pidfile), "the new dockerd's pid file")
end)

t.test("engine.sh up over a stale containerd socket", function()
  local code, out = sh("scripts/engine.sh down")
  t.eq(code, 0, out)
  -- a socket file left behind, as by a containerd that was killed
  local sock = "/var/run/docker/containerd/containerd.sock"
  assert(fs.mkdirp("/var/run/docker/containerd", 448))
  code, out = sh("rm -f " .. sock .. " && python3 -c 'import socket; s=socket.socket(socket.AF_UNIX);"
    .. " s.bind(\"" .. sock .. "\")' || : > " .. sock)
  t.eq(code, 0, out)
  code = sh("test -e " .. sock)
  t.eq(code, 0, "the stale socket is there")
  code, out = sh("scripts/engine.sh up")
  t.eq(code, 0, out)
  t.match(out, "started")
  t.ok(answers(), "dockerd answers over a stale socket")
end)

os.exit(t.run())
