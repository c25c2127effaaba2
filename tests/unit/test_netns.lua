-- mw.net's sockets made inside another network namespace (the heartbeats' netns path): the
-- socket is in the namespace it was made in, the loop's thread comes back to its own, and the
-- error paths leave nothing open. Needs CAP_SYS_ADMIN (root); skipped without it.
local t = require "t"
local core = require "mw.core"
local net = require "mw.net"
local fs = require "mw.fs"
local proc = require "mw.proc"
local tmp = require "tmp"

local CAN = net.can_setns()
local UNSHARE = "/usr/bin/unshare"

local function test_if(cond, why, name, fn)
  if cond then t.test(name, fn) else t.skip(name, why) end
end

-- one request-less exchange: the listener accepts, writes, closes
local function serve_once(srv)
  return core.spawn(function()
    local c = srv:accept(5)
    if c then c:write("hi") c:close() end
    return c ~= nil
  end, "serve")
end

test_if(CAN, "mw may not enter network namespaces here",
  "a socket made through net.netns of mw's own namespace reaches its loopback", function()
  local srv = assert(net.listen("127.0.0.1", 0))
  local task = serve_once(srv)
  local ns = assert(net.netns("/proc/self/ns/net"))
  t.eq(tostring(ns), "mw.netns (open)")
  local c, err = net.connect("127.0.0.1", srv:port(), 2, ns)
  t.ok(c, "connect: " .. tostring(err))
  t.eq(c:read(2), "hi")
  c:close()
  t.same({ core.join(task) }, { true, true })
  ns:close()
  t.eq(tostring(ns), "mw.netns (closed)")
  ns:close()     -- twice is fine
  srv:close()
end)

test_if(CAN and fs.stat(UNSHARE), "needs CAP_SYS_ADMIN and unshare(1)",
  "a socket made in another namespace is there, not here; the thread comes back home", function()
  local dir = tmp.dir()
  local p = assert(proc.spawn { args = { UNSHARE, "--net", "sh", "-c", "echo in > " .. dir .. "/ready && exec sleep 30" } })
  local ok, err = pcall(function()
    t.wait_for(function() return fs.stat(dir .. "/ready") end, 10, "the child in its own namespace")
    local srv = assert(net.listen("127.0.0.1", 0))
    local ns = assert(net.netns("/proc/" .. p:pid() .. "/ns/net"))
    -- the new namespace's loopback is down and has no listener: our port is not there
    local c, cerr, code = net.connect("127.0.0.1", srv:port(), 2, ns)
    t.eq(c, nil, "no connection into the other namespace's loopback")
    t.ok(code == "ENETUNREACH" or code == "ECONNREFUSED", "refused there: " .. tostring(cerr))
    -- and the loop's thread is home: a plain connect reaches our listener
    local task = serve_once(srv)
    local home = assert(net.connect("127.0.0.1", srv:port(), 2))
    t.eq(home:read(2), "hi")
    home:close()
    core.join(task)
    ns:close()
    srv:close()
  end)
  p:kill("KILL")
  p:wait(5)
  p:close()
  if not ok then error(err, 0) end
end)

t.test("net.netns: a missing path is an error with its code; a closed one cannot be used", function()
  local ns, err, code = net.netns("/proc/0/ns/net-none")
  t.eq(ns, nil)
  t.eq(code, "ENOENT", tostring(err))
  if CAN then
    local own = assert(net.netns("/proc/self/ns/net"))
    own:close()
    local okc, cerr = pcall(net.connect, "127.0.0.1", 1, 1, own)
    t.eq(okc, false)
    t.match(cerr, "closed mw.netns")
  end
end)

os.exit(t.run())
