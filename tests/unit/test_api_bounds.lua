-- The status API and the engine client are bounded (issue 15, part 4): a client that pipelines
-- requests without reading the answers cannot grow mw's memory (it was 2.3 GB after 10 s), idle
-- TCP clients cannot lock the unix socket's owner out, a POST with "Origin: null" is refused, and
-- an engine answer past the cap fails its call with one message instead of filling memory (a
-- 3 GB body was 6.1 GB resident). The API runs in a child `mw script` (api.start with no
-- supervisor: no engine needed), so its RSS is its own; the engine is a local test server.
local t = require "t"
local core = require "mw.core"
local proc = require "mw.proc"
local net = require "mw.net"
local fs = require "mw.fs"
local http = require "mw.http"
local docker = require "mw.docker"
local httpd = require "httpd"
local tmp = require "tmp"
local run = require "run"

local MW = os.getenv("MW_BIN") or "./mw"
local RSS_BOUND = 64 * 1024   -- KiB: about 12 MB at rest; README "Limits"

local tmpdir = tmp.dir

local SERVER = [[
local core = require "mw.core"
local api = require "mw.api"
local a = assert(api.start({ state_dir = %q, stack = { name = "bounds", components = {} } },
                           { listen = { host = "127.0.0.1", port = 0 } }))
io.stdout:write(a.port, "\n")
io.stdout:flush()
while true do core.sleep(3600) end
]]

-- Starts the API in a child -> { pid, port, sock, stop() }.
local function server()
  local d = tmpdir()
  assert(fs.mkdirp(d .. "/state/bounds", 448))
  assert(fs.write_atomic(d .. "/server.lua", SERVER:format(d .. "/state"), 420))
  local p = assert(proc.spawn { args = { MW, "script", d .. "/server.lua" }, env = run.env(), out = d .. "/out" })
  local port = t.wait_for(function()
    if p:wait(0) then error("the API server exited: " .. (fs.read(d .. "/out") or "")) end
    return tonumber((fs.read(d .. "/out") or ""):match("%f[^\n%z](%d+)\n"))
  end, 20, "the API server's port")
  local s = { pid = p:pid(), port = port, sock = d .. "/state/bounds/mw.sock" }
  t.wait_for(function() return fs.stat(s.sock) end, 10, "the API socket")
  function s.stop()
    p:kill("KILL")
    p:wait(5)
    p:close()
  end
  return s
end

local function rss_kib(pid)
  local st = fs.read("/proc/" .. pid .. "/status") or ""
  return tonumber(st:match("VmRSS:%s*(%d+)")) or 0
end

local function get(s, path, opts)
  opts = opts or {}
  opts.url = opts.url or ("http://127.0.0.1:" .. s.port .. path)
  opts.timeout = opts.timeout or 10
  opts.connect_timeout = 5
  return http.request(opts)
end

t.test("a client pipelining GET / for 2 s without reading: mw's RSS stays bounded, others are answered", function()
  local s = server()
  local before = rss_kib(s.pid)
  local c = assert(net.connect("127.0.0.1", s.port, 5))
  local batch = string.rep("GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", 200)
  local sent, peak = 0, before
  local deadline = core.now() + 2
  while core.now() < deadline do
    -- our own side stays small too: write only while the kernel takes it
    if c:queued() < 1024 * 1024 then
      assert(c:write(batch))
      sent = sent + 200
    end
    core.sleep(0.005)
    peak = math.max(peak, rss_kib(s.pid))
  end
  -- another client is answered while that one still holds its connection
  local res, err = get(s, "/metrics")
  t.ok(res, "another client: " .. tostring(err))
  t.eq(res.status, 200)
  peak = math.max(peak, rss_kib(s.pid))
  print(string.format("#   %d requests pipelined, not read; RSS %d KiB before, peak %d KiB", sent, before, peak))
  c:close()
  s.stop()
  t.ok(peak < RSS_BOUND, string.format("peak RSS %d KiB under %d KiB", peak, RSS_BOUND))
end)

t.test("70 idle TCP connections: the unix socket's client still gets an answer", function()
  local s = server()
  local idle = {}
  for i = 1, 70 do idle[i] = assert(net.connect("127.0.0.1", s.port, 5)) end
  -- the server has taken them all (the 65th and later are told 503 and closed)
  local last = idle[70]
  local got = last:read(10)
  t.match(got or "", "^HTTP/1.1 503", "the 70th TCP client is over the TCP limit")
  local res, err = http.request { url = "http://localhost/api/status", unix = s.sock, timeout = 10, connect_timeout = 5 }
  t.ok(res, "the unix socket's client: " .. tostring(err))
  t.eq(res.status, 503, "answered (not supervising: no supervisor in this server)")
  t.match(res.body, "not supervising")
  for _, c in ipairs(idle) do c:close() end
  s.stop()
end)

t.test("POST /api/reload with Origin: null is refused (403), on TCP and on the socket", function()
  local s = server()
  local res = assert(get(s, "/api/reload", { method = "POST", headers = { Origin = "null" } }))
  t.eq(res.status, 403, res.body)
  t.match(res.body, "cross%-origin")
  res = assert(http.request { url = "http://localhost/api/reload", unix = s.sock, method = "POST",
                              headers = { Origin = "null" }, timeout = 10 })
  t.eq(res.status, 403, res.body)
  -- without an Origin (curl, mw itself) it goes through to the reload (503 here: no supervisor)
  res = assert(get(s, "/api/reload", { method = "POST" }))
  t.eq(res.status, 503, res.body)
  s.stop()
end)

t.test("POST /api/stop, start, restart, down from another origin are refused (403); GET is 405", function()
  local s = server()
  for _, path in ipairs { "/api/stop", "/api/start", "/api/restart?components=web", "/api/down" } do
    local res = assert(get(s, path, { method = "POST", headers = { Origin = "http://evil.example" } }))
    t.eq(res.status, 403, path .. ": " .. res.body)
    res = assert(get(s, path:gsub("%?.*", ""), {}))
    t.eq(res.status, 405, path)
    -- without an Origin: through to the supervisor (503 here: there is none)
    res = assert(get(s, path, { method = "POST" }))
    t.eq(res.status, 503, path .. ": " .. res.body)
  end
  s.stop()
end)

t.test("the components a query names", function()
  local api = require "mw.api"
  t.same(api.query_components(""), {})
  t.same(api.query_components("components=web,db"), { "web", "db" })
  t.same(api.query_components("component=web&component=db&x=1"), { "web", "db" })
  t.same(api.query_components("components=a%2Db"), { "a-b" })
end)

---------------------------------------------------------------------------------------------
-- the engine client

t.test("http.request: an answer up to max_body is whole; one byte more fails the call", function()
  local MiB = 1024 * 1024
  local srv = httpd.start {
    ["/at"] = function() return 200, string.rep("a", MiB) end,
    ["/over"] = function() return 200, string.rep("b", MiB + 1) end,
  }
  local res = assert(http.request { url = srv.url .. "/at", max_body = MiB, timeout = 10 })
  t.eq(#res.body, MiB)
  local none, err, code = http.request { url = srv.url .. "/over", max_body = MiB, timeout = 10 }
  t.eq(none, nil)
  t.eq(code, "too_large")
  t.eq(err, "answer larger than 1 MiB")
  -- the default cap is 64 MiB: a 1 MiB + 1 answer is fine without the option
  t.eq(#assert(http.request { url = srv.url .. "/over", timeout = 10 }).body, MiB + 1)
  srv.stop()
end)

t.test("a stream holds at most max_body unread: a slow reader gets every line, in order; one line over it fails", function()
  local KiB = 1024
  local line = string.rep("x", 999)      -- 1000 bytes with its LF
  local srv = httpd.start {
    -- 2000 lines (2 MB) written as fast as the socket takes them, then a last line without LF
    ["/many"] = function(_, c)
      c:write("HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n")
      for i = 1, 2000 do c:write(string.format("%04d", i) .. line:sub(5) .. "\n") end
      c:write("end")
    end,
    -- lines just under the cap: a line's end comes in a chunk that takes the buffer past it
    ["/near"] = function(_, c)
      c:write("HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n")
      for i = 1, 5 do c:write(string.rep(tostring(i), 60 * KiB) .. "\n") end
    end,
    ["/long"] = function(_, c)
      c:write("HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nshort\n" .. string.rep("y", 300 * KiB) .. "\n")
    end,
  }
  local s = assert(http.stream { url = srv.url .. "/many", max_body = 64 * KiB, timeout = 30 })
  core.sleep(0.2)          -- the server has written all it could; mw holds at most 64 KiB of it
  local n, bad = 0, nil
  while true do
    local got, err = s:read()
    if not got then t.eq(err, "eof") break end
    n = n + 1
    if n <= 2000 and got:sub(1, 4) ~= string.format("%04d", n) then bad = bad or (n .. ": " .. got:sub(1, 8)) end
    if n % 500 == 0 then core.sleep(0.01) end
    if n == 2001 then t.eq(got, "end") end
  end
  t.eq(bad, nil, "lines in order")
  t.eq(n, 2001, "every line and the last one without LF")
  s:close()
  local near = assert(http.stream { url = srv.url .. "/near", max_body = 64 * KiB, timeout = 30 })
  for i = 1, 5 do
    core.sleep(0.02)
    local got, err = near:read()
    t.eq(got and #got, 60 * KiB, "line " .. i .. " under the cap is whole (" .. tostring(err) .. ")")
  end
  t.eq(select(2, near:read()), "eof")
  near:close()
  local l = assert(http.stream { url = srv.url .. "/long", max_body = 64 * KiB, timeout = 30 })
  t.eq(l:read(), "short")
  local none, err, code = l:read()
  t.eq(none, nil)
  t.eq(code, "too_large")
  t.eq(err, "a line longer than 65536 bytes")
  l:close()
  srv.stop()
end)

t.test("an engine answer over the cap: that call fails with one clear error, not retried", function()
  local list_calls = 0
  local srv = httpd.start {
    ["/_ping"] = function() return 200, "OK", { ["Api-Version"] = "1.41", ["Ostype"] = "linux" } end,
    ["/v1.41/version"] = function()
      return 200, '{"Version":"20.10.0-fake","ApiVersion":"1.41","MinAPIVersion":"1.12"}'
    end,
    ["/v1.41/containers/json"] = function()
      list_calls = list_calls + 1
      -- valid JSON, just too much of it: 1 MiB + a few bytes
      return 200, "[" .. string.rep(" ", 1024 * 1024) .. "]"
    end,
  }
  local e = assert(docker.connect { host = "tcp://127.0.0.1:" .. srv.port, max_answer = 1024 * 1024 })
  local v, err, code = e:list()
  t.eq(v, nil)
  t.eq(code, "too_large")
  t.match(err, "engine answer larger than 1 MiB %(GET /containers/json%)")
  t.ok(not err:find("\n"), "one line")
  t.eq(list_calls, 1, "the same answer is not asked for again")
  -- the default cap
  t.eq(docker.MAX_ANSWER, 64 * 1024 * 1024)
  local e2 = assert(docker.connect { host = "tcp://127.0.0.1:" .. srv.port })
  t.eq(#assert(e2:list()), 0, "under the default cap the same answer is read")
  srv.stop()
end)

os.exit(t.run())
