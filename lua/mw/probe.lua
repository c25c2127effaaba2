-- Heartbeat probes: one question to a component, answered true or false with the reason.
--
-- The path to the component is one of two, both loopback only (docs/internals.md
-- "Heartbeats through the container's network namespace"):
--   netns      the connection's socket is made inside the container's own network namespace
--              (net.netns of /proc/<pid>/ns/net) and goes to 127.0.0.1:<container port> there:
--              no published port, no docker-proxy. Needs CAP_SYS_ADMIN and an engine on this
--              host (its pids are ours).
--   published  127.0.0.1:<host port> that the engine publishes the heartbeat port on.
--
-- HTTP goes over mw.net as one HTTP/1.0 GET per connection, not through libcurl: the target is
-- always 127.0.0.1, and libcurl's per-transfer set-up (easy handle, URL
-- parsing, proxy-environment lookups) was 70 % of a probe's instructions (133 k against 39 k,
-- callgrind, tests/bench/RESULTS.md). HTTP/1.0 keeps the answer simple: the server closes the
-- connection after it, and chunked coding is not allowed (RFC 9112 section 7: a server must
-- not send it to an HTTP/1.0 client), though a body that comes chunked anyway is decoded.
local core = require "mw.core"
local net = require "mw.net"
local fs = require "mw.fs"

local M = {}

-- Which path heartbeats take in this process -> "netns" | "published", and why not netns
-- (nil when netns). MW_HEARTBEAT_PATH=published forces the published path (tests, or a host
-- where entering namespaces is unwanted); unset, "auto" or "netns" uses netns where mw may.
-- `engine` is the mw.docker client: only a local engine (a unix socket) runs containers whose
-- pids mean something here.
function M.choose_path(engine, env)
  env = env or os.getenv("MW_HEARTBEAT_PATH")
  if env == "published" then return "published", "MW_HEARTBEAT_PATH=published" end
  if engine and not engine.unix then return "published", "the engine is not on this host (DOCKER_HOST is not a unix socket)" end
  local ok, err = net.can_setns()
  if not ok then return "published", "mw may not enter network namespaces (" .. tostring(err) .. "; needs root or CAP_SYS_ADMIN)" end
  return "netns"
end

-- Whether mw announces a started container's addresses from inside its namespace (see
-- Sup:announce) -> true | false, why not. MW_ARP_ANNOUNCE=off turns it off; it needs what the
-- netns heartbeat path needs: a local engine and the right to enter a namespace.
function M.may_announce(engine, env)
  env = env or os.getenv("MW_ARP_ANNOUNCE")
  if env == "off" or env == "0" then return false, "MW_ARP_ANNOUNCE=" .. env end
  if engine and not engine.unix then return false, "the engine is not on this host" end
  local ok, err = net.can_setns()
  if not ok then return false, tostring(err) end
  return true
end

-- The network namespace of a container's main process -> ns | nil, why. The process must
-- still belong to the container: its cgroup path names the container's ID (cgroups(7)
-- /proc/<pid>/cgroup; Docker's cgroup is .../docker/<id> or docker-<id>.scope). An engine in
-- another pid namespace (a VM beside this host) gives a pid that is not the container's here.
function M.open_netns(pid, id)
  pid = math.tointeger(pid)
  if not pid or pid <= 0 then return nil, "no main process" end
  local ns, err = net.netns("/proc/" .. pid .. "/ns/net")
  if not ns then return nil, err end
  local cg = fs.read("/proc/" .. pid .. "/cgroup")
  if id and (not cg or not cg:find(id, 1, true)) then
    ns:close()
    return nil, "process " .. pid .. " is not the container's here (the engine is in another pid namespace?)"
  end
  return ns
end

M.MAX_BODY = 65536      -- a check or an autoscaler sees at most this much of a body
M.CLOSE_GRACE = 0.05      -- a server that keeps the connection after a whole answer has this long to close it
local CLOSE_GRACE = M.CLOSE_GRACE

local function dechunk(s)
  local out, pos = {}, 1
  while true do
    local size_end = s:find("\r\n", pos, true)
    if not size_end then return nil end
    local size = tonumber(s:sub(pos, size_end - 1):match("^%s*(%x+)"), 16)
    if not size then return nil end
    if size == 0 then return table.concat(out) end
    out[#out + 1] = s:sub(size_end + 2, size_end + 1 + size)
    pos = size_end + 4 + size
  end
end

-- Parses a whole HTTP/1.x answer: status, headers (lower-cased names), body; nil, why when
-- it is not one.
function M.parse_response(s)
  local head_end = s:find("\r\n\r\n", 1, true)
  local sep = 4
  if not head_end then head_end, sep = s:find("\n\n", 1, true), 2 end
  if not head_end then return nil, "answer ended inside its headers" end
  local head = s:sub(1, head_end - 1)
  local status = tonumber(head:match("^HTTP/%d%.%d (%d%d%d)"))
  if not status then return nil, "not an HTTP answer: " .. string.format("%q", head:sub(1, 40)) end
  local headers = {}
  for name, value in head:gmatch("\n([^:\r\n]+):[ \t]*([^\r\n]*)") do headers[name:lower()] = value end
  local body = s:sub(head_end + sep)
  local len = tonumber(headers["content-length"])
  if len and #body > len then body = body:sub(1, len) end
  if (headers["transfer-encoding"] or ""):lower():find("chunked", 1, true) then
    body = dechunk(body)
    if not body then return nil, "bad chunked body" end
  end
  return { status = status, status_line = head:match("^[^\r\n]*"), headers = headers, body = body }
end

-- The request for a path and port, made once (a probe sends the same bytes every time); with
-- keep, it asks the server to keep the connection (HTTP/1.0's keep-alive: an answer to it is
-- never chunked, and a server that does not keep connections just closes, as before).
local requests = { [true] = {}, [false] = {} }      -- keep -> path -> port -> the request
function M.request_for(path, port, keep)
  local by_path = requests[keep and true or false]
  local by_port = by_path[path]
  if not by_port then by_port = {} by_path[path] = by_port end
  local q = by_port[port]
  if not q then
    q = "GET " .. path .. " HTTP/1.0\r\nHost: 127.0.0.1:" .. port
      .. "\r\nUser-Agent: mw-heartbeat\r\nAccept: */*\r\nConnection: " .. (keep and "keep-alive" or "close") .. "\r\n\r\n"
    by_port[port] = q
  end
  return q
end

-- GET http://127.0.0.1:port<path> within timeout seconds: { status, headers, body } or nil, why.
-- With ns (a net.netns), 127.0.0.1 is the container's own loopback. max: the most of the body
-- kept (MAX_BODY).
--
-- The exchange is one net.request (core/probe.c): connect, send, read to the server's close in
-- C, one resume of the task at the end. It reads to the server's close: the side that closes
-- first keeps the TIME_WAIT, and a client holding thousands of them makes every connect
-- search longer for a free port (seen in a profile: mw closing first cost 2.4x the CPU of
-- reading to EOF). A server that keeps the connection open after a complete answer (as long
-- as its Content-Length) gets CLOSE_GRACE to close it.
--
-- keep (a net.keep, one per heartbeat): the connection is offered to be kept, and one the
-- server kept is used for the next probe. A kept one the server closed meanwhile (its idle
-- timeout) is found at that probe's first read and the probe is made again on a new one.
function M.get(port, path, timeout, ns, max, keep)
  max = max or M.MAX_BODY
  local q = M.request_for(path, port, keep)
  local t0 = keep and core.now()
  local data, stage, err, size = net.request(port, q, timeout, ns, max + 16384, CLOSE_GRACE, keep)
  -- made again on a new connection (or on another probe's kept one, while probes overlap at a
  -- start; a second stale one is made again without the keep)
  for _, k in ipairs { keep, false } do
    if stage ~= "stale" then break end
    data, stage, err, size = net.request(port, q, math.max(0.001, timeout - (core.now() - t0)), ns, max + 16384,
      CLOSE_GRACE, k or nil)
  end
  return M.answer(timeout, max, data, stage, err, size)
end

-- What net.request gave (data | nil, stage, message, bytes read), or a net.beat's answer, as
-- an answer -> { status, headers, body } | nil, why. max: the most of the body kept.
function M.answer(timeout, max, data, stage, err, size)
  if not data then
    if stage == "connect" then return nil, "connect: " .. tostring(err) end
    if err == "timeout" then return nil, "no answer within " .. string.format("%gs", timeout) end
    return nil, ((size or 0) == 0 and "no answer: " or "answer cut: ") .. tostring(err)
  end
  if #data == 0 then return nil, "connection closed without an answer" end
  local res, perr = M.parse_response(data)
  if not res then return nil, perr end
  if #res.body > max then res.body = res.body:sub(1, max) res.truncated = true end
  return res
end

-- TCP: a connect to the port (published, or in ns); with send/expect the service itself must
-- answer (a bare connect cannot see a frozen process: the kernel answers the handshake).
function M.tcp(port, hb, ns)
  local conn, err = net.connect("127.0.0.1", port, hb.timeout, ns)
  if not conn then return false, err end
  if hb.send then conn:write(hb.send) end
  if hb.expect then
    -- Only the last #expect - 1 bytes are kept between reads (the text may straddle two), so a
    -- chatty server costs no more than MAX_BODY of reading. Not finding it within MAX_BODY is
    -- a failure: a server sending garbage and never the answer is not healthy.
    local tail, seen, deadline = "", 0, core.now() + hb.timeout
    local keep = #hb.expect - 1
    while true do
      local left = deadline - core.now()
      local data, rerr
      if left > 0 then data, rerr = conn:read(left) else rerr = "timeout" end
      if not data then
        conn:close()
        return false, "no " .. string.format("%q", hb.expect) .. " in the answer (" .. tostring(rerr) .. ")"
      end
      local window = tail .. data
      if window:find(hb.expect, 1, true) then break end
      seen = seen + #data
      if seen >= M.MAX_BODY then
        conn:close()
        return false, string.format("no %q in the first %d bytes of the answer", hb.expect, M.MAX_BODY)
      end
      tail = keep > 0 and window:sub(-keep) or ""
    end
  end
  conn:close()
  return true
end

return M
