-- The C core's conventions (docs/internals.md "C conventions"): every class says
-- "mw.<type> (closed)" once closed and raises when used closed, and every failure in the
-- world returns nil, message, code with code libuv's name for the error.
local t = require "t"
local core = require "mw.core"
local fs = require "mw.fs"
local net = require "mw.net"
local proc = require "mw.proc"
local dgram = require "mw.dgram"
local signal = require "mw.signal"
local httpparse = require "mw.httpparse"

local base = core.stats()
local dir = os.tmpname()
os.remove(dir)
assert(fs.mkdirp(dir, 448))

-- every handle kind, opened, with the name its class has
local function handles()
  local srv = assert(net.listen("127.0.0.1", 0))
  local conn = assert(net.connect("127.0.0.1", srv:port(), 5))
  local p = assert(proc.spawn { args = { "/bin/busybox", "true" } })
  return {
    { "mw.cond", core.cond() },
    { "mw.signal", signal.watch { "USR2" } },
    { "mw.watch", assert(fs.watch(dir)) },
    { "mw.lock", assert(fs.lock(dir .. "/lock")) },
    { "mw.process", p },
    { "mw.pidwatch", assert(proc.watch(core.pid())) },
    { "mw.server", srv },
    { "mw.conn", conn },
    { "mw.dgram", assert(dgram.bind(dir .. "/sock")) },
    { "mw.httpparser", httpparse.new() },
  }
end

t.test("a closed handle of every class says 'mw.<type> (closed)', and may be closed twice", function()
  for _, h in ipairs(handles()) do
    local name, obj = h[1], h[2]
    t.ok(tostring(obj):find(name, 1, true) == 1, "open: " .. tostring(obj))
    t.ok(not tostring(obj):find("closed", 1, true), "open: " .. tostring(obj))
    obj:close()
    t.eq(tostring(obj), name .. " (closed)")
    obj:close()
    t.eq(tostring(obj), name .. " (closed)")
  end
end)

t.test("using a closed handle raises, naming its class", function()
  local c = core.cond()
  c:close()
  local ok, err = pcall(c.notify, c)
  t.eq(ok, false)
  t.match(err, "attempt to use a closed mw%.cond")
  local srv = assert(net.listen("127.0.0.1", 0))
  srv:close()
  ok, err = pcall(srv.port, srv)
  t.eq(ok, false)
  t.match(err, "attempt to use a closed mw%.server")
end)

t.test("a task is a class too: 'mw.task <name> (<state>)'", function()
  local task = core.spawn(function() end, "tiny")
  core.join(task)
  t.eq(tostring(task), "mw.task tiny (done)")
end)

t.test("fs failures carry the errno's name, not a catch-all EIO", function()
  local f = dir .. "/file"
  assert(fs.write_atomic(f, "x"))
  local r, msg, code = fs.read(f .. "/below")
  t.eq(r, nil); t.match(msg, "^cannot read .*/below: "); t.eq(code, "ENOTDIR")
  r, msg, code = fs.list(dir .. "/none")
  t.eq(r, nil); t.match(msg, "No such file"); t.eq(code, "ENOENT")
  r, msg, code = fs.mkdirp(f .. "/sub")
  t.eq(r, nil); t.ok(msg); t.eq(code, "ENOTDIR")
  r, msg, code = fs.watch(dir .. "/none")
  t.eq(r, nil); t.match(msg, "^cannot watch "); t.eq(code, "ENOENT")
  -- the codes mw's Lua already relies on stay
  r, msg, code = fs.read(dir)
  t.eq(r, nil); t.match(msg, "not a regular file"); t.eq(code, "EINVAL")
  r, msg, code = fs.read(f, 0)
  t.eq(r, nil); t.match(msg, "larger than"); t.eq(code, "EFBIG")
end)

t.test("net, proc and dgram failures carry a code too", function()
  local srv = assert(net.listen("127.0.0.1", 0))
  local port = srv:port()
  local r, msg, code = net.listen("127.0.0.1", port)
  t.eq(r, nil); t.match(msg, "^cannot listen on 127%.0%.0%.1: "); t.eq(code, "EADDRINUSE")
  srv:close()
  r, msg, code = net.connect("127.0.0.1", port, 5)
  t.eq(r, nil); t.match(msg, "refused"); t.eq(code, "ECONNREFUSED")
  r, msg, code = net.connect("unix:" .. dir .. "/no-such-socket", nil, 5)
  t.eq(r, nil); t.ok(msg); t.eq(code, "ENOENT")
  r, msg, code = proc.spawn { args = { dir .. "/no-such-program" } }
  t.eq(r, nil); t.match(msg, "^cannot start "); t.eq(code, "ENOENT")
  r, msg, code = proc.spawn { args = { "/bin/busybox", "true" }, out = dir .. "/none/out.log" }
  t.eq(r, nil); t.match(msg, "^cannot open "); t.eq(code, "ENOENT")
  r, msg, code = dgram.send(dir .. "/no-such-socket", "READY=1")
  t.eq(r, nil); t.match(msg, "^cannot send to "); t.eq(code, "ENOENT")
  local d = assert(dgram.bind(dir .. "/taken"))
  r, msg, code = dgram.bind(dir .. "/taken")
  t.eq(r, nil); t.match(msg, "^cannot bind "); t.eq(code, "EADDRINUSE")
  d:close()
end)

t.test("tar.pack and core.kill failures carry a code too", function()
  local tar = require "mw.tar"
  local r, msg, code = tar.pack(dir .. "/missing")
  t.eq(r, nil); t.match(msg, "missing: No such file or directory"); t.eq(code, "ENOENT")
  assert(fs.write_atomic(dir .. "/plain", "x"))
  r, msg, code = tar.pack(dir .. "/plain")
  t.eq(r, nil); t.match(msg, "plain: Not a directory"); t.eq(code, "ENOTDIR")
  -- pid_max is at most 2^22 on Linux: this pid cannot exist
  r, msg, code = core.kill(2 ^ 22 + 1, "0")
  t.eq(r, nil); t.match(msg, "No such process"); t.eq(code, "ESRCH")
end)

t.test("timeout, closed and eof keep their words", function()
  local c = core.cond()
  t.same({ c:wait(0.01) }, { nil, "timeout" })
  local waiter = core.spawn(function() return c:wait(5) end)
  core.sleep(0.01)
  c:close()
  t.same({ core.join(waiter) }, { true, nil, "closed" })
  local srv = assert(net.listen("127.0.0.1", 0))
  local conn = assert(net.connect("127.0.0.1", srv:port(), 5))
  local peer = assert(srv:accept(5))
  peer:close()
  t.same({ conn:read(5) }, { nil, "eof" })
  conn:close()
  srv:close()
end)

t.test("conn:shutdown half-closes: the peer reads its end and still answers (mw exec -i)", function()
  local path = dir .. "/half.sock"
  local srv = assert(net.listen("unix:" .. path))
  local conn = assert(net.connect("unix:" .. path, nil, 5))
  local peer = assert(srv:accept(5))
  assert(conn:write("to the end"))
  t.eq(conn:shutdown(), true)
  local got = {}
  while true do
    local chunk, err = peer:read(5)
    if not chunk then t.eq(err, "eof") break end
    got[#got + 1] = chunk
  end
  t.eq(table.concat(got), "to the end")
  assert(peer:write("answer"))
  t.eq(conn:read(5), "answer", "the half-closed side still reads")
  peer:close()
  conn:close()
  srv:close()
end)

t.test("net.open and mw.tty on an fd that is no stream or terminal: nil, message, code", function()
  local tty = require "mw.tty"
  local c, msg, code = net.open(987)
  t.eq(c, nil)
  t.match(msg, "^net%.open: fd 987")
  t.eq(code, "ENOTSUP")
  local r
  r, msg, code = tty.raw(987)
  t.eq(r, nil)
  t.match(msg, "^tty%.raw: fd 987")
  t.eq(code, "EBADF")
  r, msg, code = tty.size(987)
  t.eq(r, nil)
  t.match(msg, "^tty%.size: fd 987")
  t.eq(code, "EBADF")
end)

t.test("after all that: no open handle and no leaked reference", function()
  os.execute("rm -rf '" .. dir .. "'")
  local last
  local ok = pcall(t.wait_for, function()
    collectgarbage(); collectgarbage()
    last = core.stats()
    return last.handles == 0 and last.anchored == base.anchored and last.tasks == 1
  end, 3)
  t.ok(ok, "still open or anchored: " .. require("cjson").encode(last) .. ", at start: " .. require("cjson").encode(base))
end)

os.exit(t.run())
