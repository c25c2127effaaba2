-- Drives build/mw-fault-proxy from a test: start it in front of the engine socket, add and
-- clear fault rules, take the "engine" away and back, read its counters.
local core = require "mw.core"
local proc = require "mw.proc"
local net = require "mw.net"
local fs = require "mw.fs"

local P = {}

local BIN = "build/mw-fault-proxy"

-- Builds the proxy when it is missing or older than its source (make test does not know it).
function P.build()
  local ok = os.execute("make -s --no-print-directory " .. BIN .. " >/dev/null 2>&1")
  if not ok or not fs.stat(BIN) then return nil, "cannot build " .. BIN .. " (make " .. BIN .. ")" end
  return true
end

-- The engine socket the proxy forwards to: the test's own DOCKER_HOST when it is a unix one.
function P.upstream()
  local h = os.getenv("DOCKER_HOST")
  local path = h and h:match("^unix://(/.+)$")
  return path or "/var/run/docker.sock"
end

local Proxy = {}
Proxy.__index = Proxy

local function wait_socket(path, seconds)
  local deadline = core.now() + seconds
  while core.now() < deadline do
    local st = fs.stat(path)
    if st and st.type == "socket" then return true end
    core.sleep(0.01)
  end
  return nil
end

-- P.start{ dir = tmpdir, rules = { "error path=/x count=1", ... }, seed = n, verbose = bool }
function P.start(o)
  assert(P.build())
  local dir = assert(o.dir, "proxy: dir")
  local px = setmetatable({
    sock = dir .. "/engine.sock", ctl_path = dir .. "/ctl.sock", log = dir .. "/proxy.log",
  }, Proxy)
  px.host = "unix://" .. px.sock
  local args = { BIN, "-l", px.sock, "-u", o.upstream or P.upstream(), "-c", px.ctl_path }
  if o.verbose ~= false then args[#args + 1] = "-v" end
  if o.seed then args[#args + 1] = "-s"; args[#args + 1] = tostring(o.seed) end
  if o.file then args[#args + 1] = "-f"; args[#args + 1] = o.file end
  for _, r in ipairs(o.rules or {}) do args[#args + 1] = "-r"; args[#args + 1] = r end
  px.p = assert(proc.spawn { args = args, out = px.log })
  if not wait_socket(px.ctl_path, 5) or not wait_socket(px.sock, 5) then
    px:stop()
    error("the fault proxy did not start; its log:\n" .. (fs.read(px.log) or ""))
  end
  return px
end

-- Sends one control command -> the reply lines (the last one "ok ..."); raises on "err".
function Proxy:ctl(cmd)
  local c = assert(net.connect("unix:" .. self.ctl_path, nil, 5))
  assert(c:write(cmd .. "\n"))
  local buf = ""
  local deadline = core.now() + 5
  local function done(b)
    return b:find("^ok[^\n]*\n") or b:find("\nok[^\n]*\n") or b:find("^err[^\n]*\n") or b:find("\nerr[^\n]*\n")
  end
  while not done(buf) do
    local d, err = c:read(5)
    if not d then c:close() error("proxy control: " .. tostring(err) .. " after " .. buf) end
    buf = buf .. d
    if core.now() > deadline then c:close() error("proxy control: no answer to " .. cmd) end
  end
  c:close()
  if buf:find("^err") or buf:find("\nerr") then error("proxy control: " .. cmd .. ": " .. buf) end
  return buf
end

function Proxy:add(rule) return self:ctl("add " .. rule) end
function Proxy:clear() return self:ctl("clear") end
function Proxy:down() return self:ctl("down") end
function Proxy:up() return self:ctl("up") end
function Proxy:kill() return self:ctl("kill") end

-- -> { requests =, injected =, connections =, rules = { { action, path, matched, fired } } }
function Proxy:stats()
  local text = self:ctl("stats")
  local s = { rules = {} }
  s.requests = tonumber(text:match("requests=(%d+)"))
  s.injected = tonumber(text:match("injected=(%d+)"))
  s.connections = tonumber(text:match("connections=(%d+)"))
  for i, action, path, m, f in text:gmatch("rule (%d+) (%S+) path=(%S*) matched=(%d+) fired=(%d+)") do
    s.rules[tonumber(i) + 1] = { action = action, path = path, matched = tonumber(m), fired = tonumber(f) }
  end
  return s
end

-- The requests the proxy saw so far, as { method, target, action? } from its verbose log.
function Proxy:requests()
  local out = {}
  for line in (fs.read(self.log) or ""):gmatch("[^\n]+") do
    local m, tgt, act = line:match("^fault%-proxy: #%d+ (%u+) (%S+) %-> (%S+)")
    if not m then m, tgt = line:match("^fault%-proxy: #%d+ (%u+) (%S+)") end
    if m then out[#out + 1] = { method = m, target = tgt, action = act } end
  end
  return out
end

function Proxy:stop()
  if self.p then
    self.p:kill("TERM")
    if not self.p:wait(5) then self.p:kill("KILL"); self.p:wait(5) end
    self.p:close()
    self.p = nil
  end
end

-- Spawns mw through E.mw with DOCKER_HOST set to the proxy, whatever the test's own
-- environment says (E.mw copies DOCKER_HOST from it first, and the first one wins).
function P.mw(E, px_or_host, args, opts)
  local host = type(px_or_host) == "table" and px_or_host.host or px_or_host
  opts = opts or {}
  local env = { "DOCKER_HOST=" .. host }
  for _, kv in ipairs(opts.env or {}) do env[#env + 1] = kv end
  local real = os.getenv
  os.getenv = function(k) if k == "DOCKER_HOST" then return nil end return real(k) end -- luacheck: ignore 122
  local ok, h = pcall(E.mw, args, { env = env, cwd = opts.cwd })
  os.getenv = real -- luacheck: ignore 122
  if not ok then error(h, 2) end
  return h
end

return P
