-- A real etcd for tests: one member or a cluster of three on 127.0.0.1 ports of their own,
-- data dirs in a temp dir, every member stopped after the cases even when one fails
-- (registered with t.after) or by the caller (benchmarks) with X.stop_all().
local core = require "mw.core"
local proc = require "mw.proc"
local net = require "mw.net"
local fs = require "mw.fs"
local http = require "mw.http"
local cjson = require "cjson"
local tmp = require "tmp"

local X = {}
X.BIN = "etcd"
local live = {}

function X.available()
  local ok = os.execute("command -v etcd >/dev/null 2>&1")
  return ok and true or false
end

-- A loopback port nobody listens on now (the kernel's pick; etcd binds it a moment later).
local function free_port()
  local srv = assert(net.listen("127.0.0.1", 0))
  local p = srv:port()
  srv:close()
  return p
end

local Cluster = {}
Cluster.__index = Cluster

-- A CA, a server certificate for 127.0.0.1 and a client certificate, made with openssl in dir
-- -> { ca, cert, key (the server's), client_cert, client_key }
local function make_certs(dir)
  local q = function(s) return "'" .. s:gsub("'", "'\\''") .. "'" end
  local d = q(dir)
  local script = table.concat({
    "set -e", "cd " .. d,
    "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout ca.key -out ca.pem -days 2 -subj /CN=mwtest-ca",
    "printf 'subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth,clientAuth\n' > server.ext",
    "printf 'extendedKeyUsage=clientAuth\n' > client.ext",
    "openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout server.key -out server.csr -subj /CN=127.0.0.1",
    "openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out server.pem -days 2 -extfile server.ext",
    "openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout client.key -out client.csr -subj /CN=mw",
    "openssl x509 -req -in client.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out client.pem -days 2 -extfile client.ext",
  }, "\n")
  assert(os.execute("sh -c " .. q(script) .. " >" .. d .. "/openssl.log 2>&1"), "openssl: " .. (fs.read(dir .. "/openssl.log") or ""))
  return { ca = dir .. "/ca.pem", cert = dir .. "/server.pem", key = dir .. "/server.key",
           client_cert = dir .. "/client.pem", client_key = dir .. "/client.key" }
end

-- X.start(n[, { tls = true }]) -> cluster with members[i] = { name, client, peer, dir }, url
-- (etcd://... or, with tls, etcds://... and c.certs: clients must show a certificate)
function X.start(n, o)
  n = n or 1
  local dir = tmp.dir("etcd")
  local c = setmetatable({ members = {}, dir = dir }, Cluster)
  if o and o.tls then
    c.certs = make_certs(dir)
    c.tls = { ca = c.certs.ca, cert = c.certs.client_cert, key = c.certs.client_key }
  end
  c.scheme = c.certs and "https" or "http"
  local initial = {}
  for i = 1, n do
    local m = { name = "m" .. i, client = free_port(), peer = free_port(), dir = dir .. "/m" .. i }
    m.log = dir .. "/m" .. i .. ".log"
    c.members[i] = m
    initial[#initial + 1] = m.name .. "=http://127.0.0.1:" .. m.peer
  end
  c.initial = table.concat(initial, ",")
  local hosts = {}
  for i, m in ipairs(c.members) do
    hosts[#hosts + 1] = "127.0.0.1:" .. m.client
    c:start_member(i, "new")
  end
  c.url = (c.certs and "etcds://" or "etcd://") .. table.concat(hosts, ",") .. "/mwtest"
  live[c] = true
  c:wait_healthy(60)
  return c
end

function Cluster:start_member(i, state)
  local m = self.members[i]
  local args = { X.BIN, "--name", m.name, "--data-dir", m.dir,
    "--listen-client-urls", self.scheme .. "://127.0.0.1:" .. m.client,
    "--advertise-client-urls", self.scheme .. "://127.0.0.1:" .. m.client,
    "--listen-peer-urls", "http://127.0.0.1:" .. m.peer, "--initial-advertise-peer-urls", "http://127.0.0.1:" .. m.peer,
    "--initial-cluster", self.initial, "--initial-cluster-state", state or "new",
    "--initial-cluster-token", "mwtest-" .. core.pid(),
    -- a quieter disk on a shared machine, and shorter timeouts for failover in tests
    "--heartbeat-interval", "100", "--election-timeout", "1000", "--logger", "zap", "--log-level", "warn" }
  if self.certs then
    for _, a in ipairs { "--cert-file", self.certs.cert, "--key-file", self.certs.key, "--client-cert-auth",
                         "--trusted-ca-file", self.certs.ca } do args[#args + 1] = a end
  end
  m.p = assert(proc.spawn { args = args, out = m.log })
end

local function post(port, path, body, c)
  local res = http.request { method = "POST", url = (c and c.scheme or "http") .. "://127.0.0.1:" .. port .. path,
    body = cjson.encode(body or {}), tls = c and c.tls,
    headers = { ["Content-Type"] = "application/json" }, timeout = 1, connect_timeout = 0.5 }
  if not res or res.status ~= 200 then return nil end
  local ok, v = pcall(cjson.decode, res.body)
  return ok and v or nil
end

-- Waits until every running member answers a write through the cluster (a quorum exists).
function Cluster:wait_healthy(seconds)
  local deadline = core.now() + (seconds or 30)
  while core.now() < deadline do
    local all = true
    for _, m in ipairs(self.members) do
      if m.p and not post(m.client, "/v3/kv/put", { key = "aGVhbHRo", value = "b2s=" }, self) then all = false end
    end
    if all then return true end
    core.sleep(0.1)
  end
  local logs = {}
  for _, m in ipairs(self.members) do logs[#logs + 1] = m.name .. ":\n" .. (fs.read(m.log) or "") end
  error("etcd did not become healthy:\n" .. table.concat(logs, "\n"))
end

-- The index of the member that leads raft now -> i | nil
function Cluster:leader()
  for i, m in ipairs(self.members) do
    if m.p then
      local v = post(m.client, "/v3/maintenance/status", {}, self)
      if v and v.leader and v.header and v.leader == v.header.member_id then return i end
    end
  end
end

-- Turns on authentication with a root user (the gateway's /v3/auth calls) -> true
function Cluster:enable_auth(user, password)
  local port = self.members[1].client
  assert(post(port, "/v3/auth/role/add", { name = "root" }, self) or true)
  assert(post(port, "/v3/auth/user/add", { name = user, password = password }, self), "auth user add")
  assert(post(port, "/v3/auth/user/grant", { user = user, role = "root" }, self), "auth user grant")
  assert(post(port, "/v3/auth/enable", {}, self), "auth enable")
  return true
end

function Cluster:stop_member(i, sig)
  local m = self.members[i]
  if not m.p then return end
  m.p:kill(sig or "KILL")
  if not m.p:wait(10) then m.p:kill("KILL"); m.p:wait(5) end
  m.p:close()
  m.p = nil
end

function Cluster:stop()
  for i in ipairs(self.members) do self:stop_member(i) end
  live[self] = nil
end

-- Members stopped by stop_member start again with their data.
function Cluster:restart_members()
  for i, m in ipairs(self.members) do
    if not m.p then self:start_member(i, "existing") end
  end
  live[self] = true
  self:wait_healthy(60)
end

function X.stop_all()
  for c in pairs(live) do pcall(c.stop, c) end
end

local has_harness, harness = pcall(require, "t")
if has_harness then harness.after(X.stop_all) end

return X
