-- mw's HTTP API while `mw run` supervises a stack: status, live events, reload, Prometheus
-- metrics and the dashboard, on a unix socket in the state directory and, on request, on
-- loopback TCP. It knows the supervisor only through snapshot() and the events mw logs.
local core = require "mw.core"
local net = require "mw.net"
local fs = require "mw.fs"
local httpparse = require "mw.httpparse"
local cjson = require "cjson"
local log = require "mw.log"
local metrics = require "mw.metrics"

local M = {}

-- Connections at once, events clients included; each transport has its own, so 64 idle TCP
-- clients cannot lock the socket's owner out.
local MAX_CONNS = { unix = 64, tcp = 64 }
local FEED = 8 * 1024           -- bytes given to the parser at a time: bounds requests queued at once
local RESPONSE_BACKLOG = 256 * 1024 -- unsent response bytes past which no further request is answered
local DRAIN_POLL = 0.02         -- how often a backlogged connection looks whether its client read
local MAX_BODY = 64 * 1024      -- no endpoint takes a body; this only bounds what is read
local IDLE = 30                 -- seconds a keep-alive connection may wait for its next request
local REQUEST_TIMEOUT = 10      -- seconds for the rest of a request that has begun
local LINGER = 2                -- seconds to let a client read a last response before closing
local KEEPALIVE_EVERY = 15      -- an idle events stream gets a comment this often
local CLIENT_QUEUE = 256        -- events waiting for one events client; past this it is dropped
local CLIENT_BACKLOG = 256 * 1024 -- bytes the transport may hold for one client (where mw.net tells)
local RING = 200                -- recent events kept for a reconnecting client or a new page
local SAMPLE_EVERY = 0.25       -- how often snapshots are compared (state changes, latency)
local RELOAD_TIMEOUT = 30
local SPARK = 60                -- heartbeat latencies kept per component for the page's sparklines
local SOCKET_CHECK_EVERY = 1    -- seconds between checks that the socket is still ours
local PAGE_POLICY = "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
  .. "connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'"

-- ---------------------------------------------------------------------------------------------
-- where it listens

function M.socket_path(state_dir, stack)
  return state_dir .. "/" .. stack .. "/mw.sock"
end

-- "--listen HOST:PORT" -> { host =, port = } | nil (not asked) | nil, message (refused).
-- The API has no authentication: only a loopback address is accepted.
function M.parse_listen(spec)
  if spec == nil then return nil end
  local host, port = tostring(spec):match("^%[(.-)%]:(%d+)$")
  if not host then host, port = tostring(spec):match("^([^:]*):(%d+)$") end
  port = tonumber(port)
  if not host or not port or port > 65535 then
    return nil, "--listen " .. tostring(spec) .. ": want a loopback HOST:PORT, like 127.0.0.1:9180"
  end
  if host == "localhost" then host = "127.0.0.1" end
  local loopback = host == "::1"
  local a, b, c, d = host:match("^(%d+)%.(%d+)%.(%d+)%.(%d+)$")
  if a and tonumber(a) == 127 and tonumber(b) < 256 and tonumber(c) < 256 and tonumber(d) < 256 then loopback = true end
  if not loopback then
    return nil, "--listen " .. tostring(spec) .. ": refusing a non-loopback address; the API has no "
      .. "authentication, so mw serves it on 127.0.0.1, ::1 or localhost only"
  end
  return { host = host, port = math.tointeger(port) }
end

-- ---------------------------------------------------------------------------------------------
-- responses

local function json(v)
  local ok, s = pcall(cjson.encode, v)
  if ok then return s end
  return cjson.encode { ok = false, error = "cannot encode the answer: " .. tostring(s) }
end

-- Writes one response. opts: keep (keep-alive), head (no body), headers.
local function respond(conn, status, ctype, body, opts)
  opts = opts or {}
  local h = {
    string.format("HTTP/1.1 %d %s", status, httpparse.status_text(status)),
    "Content-Type: " .. ctype,
    "Content-Length: " .. #body,
    "Cache-Control: no-store",
    "X-Content-Type-Options: nosniff",
    "Connection: " .. (opts.keep and "keep-alive" or "close"),
  }
  for k, v in pairs(opts.headers or {}) do h[#h + 1] = k .. ": " .. v end
  return conn:write(table.concat(h, "\r\n") .. "\r\n\r\n" .. (opts.head and "" or body))
end

local function respond_json(conn, status, v, opts)
  return respond(conn, status, "application/json", json(v) .. "\n", opts)
end

-- Whether the transport still holds much for this connection (only where mw.net can tell).
local function backlogged(conn, limit)
  return conn.queued ~= nil and conn:queued() > limit
end

-- Closes after a last response: first lets the client read it (it closes once it has the
-- whole response), since closing at once may cancel writes still queued.
local function linger(conn)
  local deadline = core.now() + LINGER
  while core.now() < deadline do
    if conn.queued and conn:queued() == 0 then break end
    local data = conn:read(math.max(0.01, deadline - core.now()))
    if not data then break end
  end
  conn:close()
end

-- The Host a browser sent must name loopback: a page elsewhere that rebinds its own name to
-- 127.0.0.1 then cannot read the API.
local function loopback_host(host)
  if host == nil then return true end
  host = host:lower()
  local name = host:match("^%[(.-)%]:?%d*$") or host:match("^([^:]*):?%d*$")
  return name == "localhost" or name == "::1" or (name ~= nil and name:find("^127%.%d+%.%d+%.%d+$") ~= nil)
end

-- ---------------------------------------------------------------------------------------------
-- the server

local Api = {}
Api.__index = Api

function Api:spawn(name, fn, ...)
  local t
  t = core.spawn(function(...)
    fn(...)
    self.tasks[t] = nil
  end, name, ...)
  self.tasks[t] = true
  return t
end

-- The status document: the supervisor's snapshot, as the status file has it, plus each
-- component's dependencies (so a page can draw the graph).
function Api:status_doc()
  local sup = self.ctx.sup
  if not sup then return nil end
  local snap = sup:snapshot()
  snap.updated = core.time()
  snap.state_dir = self.ctx.state_dir
  local defs = self.ctx.stack and self.ctx.stack.components or {}
  for _, row in ipairs(snap.components or {}) do
    local deps = {}
    local def = defs[row.component or row.name]   -- an instance (web-2) has its component's
    for dep, cond in pairs(def and def.depends_on or {}) do deps[dep] = cond end
    row.depends_on = deps
  end
  return snap
end

-- Sends an event to every events client and keeps it for replay.
function Api:publish(rec)
  self.seq = self.seq + 1
  rec.id = self.seq
  local data = json(rec)
  local frame = "id: " .. self.seq .. "\ndata: " .. data .. "\n\n"
  self.ring[#self.ring + 1] = { id = self.seq, frame = frame, data = data }
  if #self.ring > RING then table.remove(self.ring, 1) end
  for c in pairs(self.clients) do
    if not c.dropped then
      if #c.q >= CLIENT_QUEUE then
        c.dropped = string.format("it fell %d events behind", #c.q)
      else
        c.q[#c.q + 1] = frame
      end
      c.cond:notify()
    end
  end
end

-- Every event mw logs: counted for the metrics, published, and a nudge to look at the states.
function Api:on_log(level, comp, event, msg, fields, time)
  self.metrics:event(event)
  if event == "reloaded" or event == "reload_failed" then self.last_reload = msg end
  local rec = { time = time, level = level, event = event, component = comp, msg = msg }
  for k, v in pairs(fields or {}) do
    local tv = type(v)
    if rec[k] == nil and (tv == "string" or tv == "number" or tv == "boolean") then rec[k] = v end
  end
  self:publish(rec)
  self.nudge:notify()
end

-- Compares a fresh snapshot with the last: state changes become events; the metrics learn
-- failures, time in backoff and heartbeat latencies.
function Api:sample()
  local sup = self.ctx.sup
  if not sup then return end
  -- Nothing changed since the last sample (no state change went through Sup:changed, and the
  -- beats' latencies come by on_beat): no event to publish, and a snapshot of every instance
  -- four times a second was most of mw's Lua work at 100 components. Time in backoff is
  -- counted from the last sample either way, and a scrape samples for itself.
  if self.beats_live and sup.changes ~= nil and sup.changes == self.sampled_changes then return end
  self.sampled_changes = sup.changes
  local snap = sup:snapshot()
  local changes = self.metrics:sample(snap, core.now())
  if not self.beats_live then
    for _, row in ipairs(snap.components or {}) do
      local lat = row.heartbeat_latency
      if type(lat) == "number" and lat ~= self.last_latency[row.name] then self:remember_latency(row.name, lat) end
    end
  end
  for _, ch in ipairs(changes) do
    self:publish { time = core.time(), level = "info", event = "state", component = ch.component,
                   state = ch.to, from = ch.from, msg = string.format("%s -> %s", tostring(ch.from), tostring(ch.to)) }
  end
end

-- The supervisor's per-beat hook (Sup.on_beat), once it has one: exact latencies.
function Api:on_beat(component, ok, latency)
  self.metrics:beat(component, ok, latency)
  self.beats_live = true
  if ok and type(latency) == "number" then self:remember_latency(component, latency) end
end

-- The last SPARK latencies of a component, for a page's first sparkline.
function Api:remember_latency(name, lat)
  self.last_latency[name] = lat
  local l = self.latencies[name] or {}
  self.latencies[name] = l
  l[#l + 1] = lat
  if #l > SPARK then table.remove(l, 1) end
end

-- POST /api/reload: the run loop reloads (as on SIGHUP) and says how it went.
function Api:reload()
  local box = self.ctx.box
  if not box then return 503, { ok = false, error = "mw is not supervising yet" } end
  local done = core.cond()
  local result
  box.put { kind = "reload", why = "API request", reply = function(ok)
    -- the reload ran just now, in one go: the last reload event logged is its own
    result = { ok = ok and true or false, msg = self.last_reload }
    done:notify()
  end }
  done:wait(RELOAD_TIMEOUT)
  done:close()
  if not result then
    return 503, { ok = false, error = "mw did not get to the reload within " .. RELOAD_TIMEOUT .. "s" }
  end
  if result.ok then return 200, { ok = true, message = result.msg } end
  return 422, { ok = false, error = result.msg or "reload failed" }
end

-- GET /api/events: a server-sent events stream. The client's own task writes; the log hook
-- only queues, so a slow client never holds mw up, and one too far behind is dropped.
function Api:events(conn, req)
  local c = { q = {}, cond = core.cond() }
  conn:write("HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-store\r\n"
    .. "X-Accel-Buffering: no\r\nConnection: close\r\n\r\nretry: 2000\n\n")
  -- replay: after the id a reconnecting EventSource sends (or ?after=N), or the last N on ?backlog=N
  local query = req.query or ""
  local after = tonumber(req.headers["last-event-id"] or query:match("after=(%d+)") or "")
  local backlog = tonumber(query:match("backlog=(%d+)") or "")
  local from = #self.ring + 1
  if after then
    while from > 1 and self.ring[from - 1].id > after do from = from - 1 end
  elseif backlog then
    from = math.max(1, #self.ring - backlog + 1)
  end
  for i = from, #self.ring do c.q[#c.q + 1] = self.ring[i].frame end
  self.clients[c] = true
  -- a second task notices the client going away at once, rather than at the next write
  local reader = core.spawn(function()
    while conn:read() do end
    c.dropped = c.dropped or "closed"
    c.cond:notify()
  end, "api-events-reader")
  while not c.dropped do
    if #c.q > 0 and not backlogged(conn, CLIENT_BACKLOG) then
      local frames = table.concat(c.q)
      c.q = {}
      local ok, err = conn:write(frames)
      if not ok then c.dropped = "write failed: " .. tostring(err) end
    else
      local woke = c.cond:wait(#c.q > 0 and 0.05 or KEEPALIVE_EVERY)
      if not woke and #c.q == 0 then c.q[1] = ": keep-alive\n\n" end
    end
  end
  self.clients[c] = nil
  if c.dropped ~= "closed" and c.dropped ~= "stopping" then
    log.warn(nil, "api", "dropped an events client: " .. c.dropped)
  end
  local rs = reader:status()
  if rs ~= "done" and rs ~= "failed" and rs ~= "cancelled" then core.cancel(reader) end
  c.cond:close()
  conn:close()
end

local ROUTES = {
  ["/"] = "GET", ["/index.html"] = "GET", ["/api/status"] = "GET", ["/api/events"] = "GET",
  ["/api/reload"] = "POST", ["/metrics"] = "GET",
  ["/api/stop"] = "POST", ["/api/start"] = "POST", ["/api/restart"] = "POST", ["/api/down"] = "POST",
}

-- The components a query names: ?components=a,b (or component=a, repeatable); none: all.
function M.query_components(query)
  local names = {}
  for key, value in tostring(query or ""):gmatch("([^&=]+)=([^&]*)") do
    if key == "components" or key == "component" then
      value = value:gsub("%%(%x%x)", function(h) return string.char(tonumber(h, 16)) end)
      for name in value:gmatch("[^,]+") do names[#names + 1] = name end
    end
  end
  return names
end

-- POST /api/stop|start|restart: the supervisor does what the user asked and answers once it is
-- done (stopped; or started and up, or failed again) with each instance's state.
function Api:user_op(op, query)
  local sup = self.ctx.sup
  if not sup then return 503, { ok = false, error = "mw is not supervising yet" } end
  local names = M.query_components(query)
  local list, unknown = sup["user_" .. op](sup, names)
  if not list then
    return 404, { ok = false, error = string.format("no component %s in stack %s", tostring(unknown), sup.stack.name) }
  end
  local states = sup:user_states(list)
  return 200, { ok = true, components = states }
end

-- POST /api/down: every component stopped (dependents first), then supervision ends and mw
-- exits; the command removes the containers and the network once mw has gone.
function Api:down()
  local box, sup = self.ctx.box, self.ctx.sup
  if not box or not sup then return 503, { ok = false, error = "mw is not supervising yet" } end
  sup:user_stop({})
  local done = core.cond()
  local result
  box.put { kind = "down", reply = function(ok) result = ok done:notify() end }
  done:wait(RELOAD_TIMEOUT)
  done:close()
  if not result then return 503, { ok = false, error = "mw did not end its supervision" } end
  return 200, { ok = true, pid = core.pid() }
end

-- The dashboard with the current status and recent events in it, so its first picture needs no
-- round trip. In the JSON, "<" is escaped: no text can end the script element early.
function Api:page()
  local events = {}
  for i, r in ipairs(self.ring) do events[i] = r.data end
  local lat = {}
  for name, l in pairs(self.latencies) do lat[name] = l end
  local boot = '{"status":' .. (self.ctx.sup and json(self:status_doc()) or "null")
    .. ',"latency":' .. (next(lat) and json(lat) or "{}")
    .. ',"events":[' .. table.concat(events, ",") .. "]}"
  boot = boot:gsub("<", "\\u003c")
  local html = require("mw.dashboard").html
  local at, stop = html:find("<!--BOOT-->", 1, true)
  return html:sub(1, at - 1) .. boot .. html:sub(stop + 1)
end

-- Answers one request -> keep (true: the connection may carry another), the status sent
-- (nil when it was counted already).
function Api:route(conn, req, what)
  local path = req.path or "/"
  local method = req.method
  local keep = req.keep_alive and not req.upgrade
  local head = method == "HEAD"
  if head then method = "GET" end
  if what == "tcp" and not loopback_host(req.headers.host) then
    respond_json(conn, 403, { ok = false, error = "the Host header must name a loopback address" })
    return false, 403
  end
  local want = ROUTES[path]
  if not want then
    respond_json(conn, 404, { ok = false, error = "no such endpoint: " .. path }, { keep = keep, head = head })
    return keep, 404
  end
  if method ~= want then
    respond_json(conn, 405, { ok = false, error = path .. " takes " .. want }, { keep = keep, head = head,
      headers = { Allow = want == "GET" and "GET, HEAD" or want } })
    return keep, 405
  end
  if path == "/" or path == "/index.html" then
    -- the page talks to this server only: the policy forbids anything else it might load
    respond(conn, 200, "text/html; charset=utf-8", self:page(), { keep = keep, head = head,
      headers = { ["Content-Security-Policy"] = PAGE_POLICY } })
    return keep, 200
  elseif path == "/api/status" then
    local doc = self:status_doc()
    if not doc then
      respond_json(conn, 503, { ok = false, error = "mw is not supervising yet" }, { keep = keep, head = head })
      return keep, 503
    end
    respond_json(conn, 200, doc, { keep = keep, head = head })
    return keep, 200
  elseif path == "/metrics" then
    local sup = self.ctx.sup
    local n = 0
    for _ in pairs(self.clients) do n = n + 1 end
    self.metrics.event_clients:set(nil, n)
    local text = self.metrics:render(sup and sup:snapshot(), self.ctx.engine and self.ctx.engine.calls, core.now(),
      self.ctx.alerts and self.ctx.alerts.stats)
    respond(conn, 200, metrics.CONTENT_TYPE, text, { keep = keep, head = head })
    return keep, 200
  elseif path == "/api/events" then
    if head then respond(conn, 200, "text/event-stream", "", { head = true }) return false, 200 end
    -- counted as it starts: a stream may last as long as mw
    self:count(path, 200)
    self:events(conn, req)
    return false, nil
  end
  -- POST /api/reload and the user's stop, start, restart and down. A page on another site may
  -- send a POST to loopback; only our own page may.
  local origin = req.headers.origin
  -- "null" is what a sandboxed frame, a file: page or a redirect sends: a page, not ours.
  if origin and (origin == "null" or origin:gsub("^https?://", "") ~= (req.headers.host or "")) then
    respond_json(conn, 403, { ok = false, error = "cross-origin request refused" })
    return false, 403
  end
  local status, v
  if path == "/api/down" then
    status, v = self:down()
    respond_json(conn, status, v)
    -- mw exits once the answer is on its way (closing at once may cancel a queued write)
    local box = self.ctx.box
    if status == 200 and box then
      core.spawn(function()
        local deadline = core.now() + LINGER
        while core.now() < deadline do
          -- (a connection the client has closed is done with too)
          local ok, n = pcall(function() return conn.queued and conn:queued() or 0 end)
          if not ok or n == 0 then break end
          core.sleep(0.01)
        end
        box.put { kind = "leave" }
      end, "api-down")
    end
    return false, status
  elseif path ~= "/api/reload" then
    status, v = self:user_op(path:match("^/api/(%a+)$"), req.query)
  else
    status, v = self:reload()
  end
  respond_json(conn, status, v, { keep = keep })
  return keep, status
end

function Api:count(path, status)
  local endpoint = ROUTES[path] and (path == "/index.html" and "/" or path) or "other"
  self.metrics.api_requests:inc({ endpoint = endpoint, code = tostring(status) })
end

function Api:handle(conn, req, what)
  local keep, status = self:route(conn, req, what)
  if status then self:count(req.path, status) end
  return keep
end

-- Waits while the responses already written hold more than RESPONSE_BACKLOG unsent: a client
-- that pipelines requests without reading answers gets no more answers, and (its requests
-- unread) the kernel stops it sending. -> true | nil when it did not read for IDLE seconds.
local function drained(conn)
  local deadline = core.now() + IDLE
  while backlogged(conn, RESPONSE_BACKLOG) do
    if core.now() > deadline then return nil end
    core.sleep(DRAIN_POLL)
  end
  return true
end

-- One connection: requests in order (pipelined ones too), until the client or an error ends it.
-- What it holds is bounded: unparsed bytes (mw.net pauses reading past its backlog and the
-- parser takes FEED bytes at a time), the requests parsed from one FEED, the unsent answers.
function Api:serve(conn, what)
  local parser = httpparse.new { max_body = MAX_BODY }
  local pending, unparsed, at = {}, "", 1
  local linger_after = false
  while not self.closed do
    local req = table.remove(pending, 1)
    if req then
      if not drained(conn) then break end
      local keep = self:handle(conn, req, what)
      if not keep then
        linger_after = req.path ~= "/api/events"
        break
      end
    else
      if at > #unparsed then
        local data = conn:read(parser:busy() and REQUEST_TIMEOUT or IDLE)
        if not data then break end
        unparsed, at = data, 1
      end
      local reqs, err, status = parser:feed(unparsed:sub(at, at + FEED - 1))
      at = at + FEED
      if not reqs then
        respond_json(conn, status or 400, { ok = false, error = err })
        self:count(nil, status or 400)
        linger_after = true
        break
      end
      for _, r in ipairs(reqs) do pending[#pending + 1] = r end
    end
  end
  parser:close()
  if linger_after and not self.closed then linger(conn) else conn:close() end
end

function Api:accept_loop(srv, what)
  while not self.closed do
    local conn = srv:accept()
    if not conn then break end
    if self.nconns[what] >= MAX_CONNS[what] then
      respond_json(conn, 503, { ok = false, error = "too many connections" })
      conn:close()
    else
      self.nconns[what] = self.nconns[what] + 1
      self.conns[conn] = true
      self:spawn("api-conn " .. what, function()
        local ok, err = pcall(self.serve, self, conn, what)
        if not ok then log.warn(nil, "api", "a request failed: " .. tostring(err)) end
        self.conns[conn] = nil
        self.nconns[what] = self.nconns[what] - 1
        conn:close()
      end)
    end
  end
end

-- Starts serving for a `mw run`: ctx is run's (sup, stack, box, engine, state_dir); opts.listen
-- from parse_listen. The unix socket is best effort (a warning); a TCP address asked for and
-- not available is an error. -> api | nil, message
function M.start(ctx, opts)
  opts = opts or {}
  local self = setmetatable({ ctx = ctx, servers = {}, conns = {}, nconns = { unix = 0, tcp = 0 }, clients = {}, ring = {},
                              seq = 0, tasks = {}, metrics = metrics.collector(), nudge = core.cond(),
                              latencies = {}, last_latency = {} }, Api)
  if opts.listen then
    local l = opts.listen
    local srv, err = net.listen(l.host, l.port)
    if not srv then
      self:close()
      local why = tostring(err):gsub("^cannot listen on [^:]*: ", "")
      return nil, string.format("--listen %s:%d: %s", l.host, l.port, why)
    end
    local host = l.host:find(":", 1, true) and ("[" .. l.host .. "]") or l.host
    self.url = "http://" .. host .. ":" .. srv:port() .. "/"
    self.port = srv:port()
    self.servers[#self.servers + 1] = srv
    self:spawn("api-tcp", self.accept_loop, self, srv, "tcp")
    log.info(nil, "api", "dashboard, API and metrics on " .. self.url, { url = self.url, port = self.port })
  end
  if ctx.state_dir and ctx.stack then
    self.socket = M.socket_path(ctx.state_dir, ctx.stack.name)
    local ok, err = self:bind_unix()
    if not ok then log.warn(nil, "api", "no API socket: " .. tostring(err)) end
  end
  -- the log hook must never fail mw: it runs inside whatever logged
  local prev = log.hook
  self.prev_hook = prev
  self.hook = function(...)
    if prev then prev(...) end
    if self.closed then return end     -- a hook set after ours may still call it
    local ok, err = pcall(self.on_log, self, ...)
    if not ok and not self.hook_failed then
      self.hook_failed = true
      io.stderr:write("mw: api: event hook failed: ", tostring(err), "\n")
    end
  end
  log.hook = self.hook
  self:spawn("api-sampler", function()
    while not self.closed do
      self.nudge:wait(SAMPLE_EVERY)
      if self.closed then break end
      local ok, err = pcall(self.sample, self)
      if not ok and not self.sample_failed then
        self.sample_failed = true
        log.warn(nil, "api", "sampling the status failed (it goes on): " .. tostring(err))
      end
    end
  end)
  -- its own task, so that nothing the sampler meets can stop the socket coming back
  if self.socket then
    self:spawn("api-socket", function()
      while not self.closed do
        core.sleep(SOCKET_CHECK_EVERY)
        if self.closed then break end
        self:check_socket()
      end
    end)
  end
  return self
end

local function file_id(st) return st and (st.ino .. "@" .. st.mtime) end

-- Serves the unix socket. We hold the stack's place in line, so a socket already there is a
-- predecessor's: stale.
function Api:bind_unix()
  local path = self.socket
  local st = fs.stat(path)
  if st and st.type == "socket" then fs.remove(path) end
  local srv, err = net.listen("unix:" .. path)
  if not srv then return nil, err end
  fs.chmod(path, 384)
  self.socket_id = file_id(fs.stat(path))
  self.unix = srv
  self:spawn("api-unix", self.accept_loop, self, srv, "unix")
  return true
end

-- libuv removes a unix server's path when it closes the server, so a predecessor that steps
-- down after --force takes our socket with it when it closes its own: put ours back.
function Api:check_socket()
  if not self.socket or self.closed then return end
  -- a predecessor's close can unlink the path between our listen and our stat of it: then
  -- socket_id is nil, and "nothing there" must not read as "ours" (it did: the socket stayed gone)
  local now = file_id(fs.stat(self.socket))
  if self.unix and now and now == self.socket_id then return end
  -- closing unlinks the path: nothing, or a stranger's socket (we are the active mw)
  if self.unix then self.unix:close() self.unix = nil end
  local ok, err = self:bind_unix()
  if ok then
    log.info(nil, "api", "the API socket " .. self.socket .. " was removed; serving it again")
  elseif not self.rebind_warned then
    self.rebind_warned = true
    log.warn(nil, "api", "the API socket was removed and cannot be made again: " .. tostring(err))
  end
end

-- Stops serving: clients are dropped, tasks end, the socket goes (unless a successor's is there).
function Api:close()
  if self.closed then return end
  self.closed = true
  if log.hook == self.hook then log.hook = self.prev_hook end
  for _, srv in ipairs(self.servers) do srv:close() end
  -- (libuv removes the socket's path as it closes the server)
  if self.unix then self.unix:close() self.unix = nil end
  for c in pairs(self.clients) do
    c.dropped = "stopping"
    c.cond:notify()
  end
  local me = core.current()
  for t in pairs(self.tasks) do
    if t ~= me and t:status() ~= "done" and t:status() ~= "failed" and t:status() ~= "cancelled" then core.cancel(t) end
  end
  self.tasks = {}
  for conn in pairs(self.conns) do conn:close() end
  self.conns = {}
  for c in pairs(self.clients) do c.cond:close() end
  self.clients = {}
  self.nudge:close()
end

-- ---------------------------------------------------------------------------------------------
-- the client side, for commands: ask the running mw of a stack over its socket.

-- api.query(state_dir, stack, path[, { method =, timeout = }]) -> decoded JSON (or the text of a
-- non-JSON answer) | nil, message.  nil when no mw serves the stack.
function M.query(state_dir, stack, path, opts)
  opts = opts or {}
  local http = require "mw.http"
  state_dir = state_dir or require("mw.owner").state_dir(require("mw.queue").default_dir())
  local sock = M.socket_path(state_dir, stack)
  local st = fs.stat(sock)
  if not st or st.type ~= "socket" then return nil, "no mw serves stack " .. stack .. " (no " .. sock .. ")" end
  local res, err = http.request { url = "http://localhost" .. path, unix = sock, method = opts.method or "GET",
                                  timeout = opts.timeout or 5, connect_timeout = 1 }
  if not res then return nil, "cannot ask the mw of stack " .. stack .. ": " .. tostring(err) end
  local body = res.body or ""
  local v
  if (res.headers["content-type"] or ""):find("json", 1, true) then
    -- the engine client's decoder: integral numbers come back as integers (a pid, a count)
    local dv = require("mw.docker").decode(body)
    if dv == nil then return nil, "the mw of stack " .. stack .. " answered bad JSON" end
    v = dv
  else
    v = body
  end
  if res.status < 200 or res.status >= 300 then
    local why = type(v) == "table" and v.error or ("HTTP " .. res.status)
    return nil, tostring(why), res.status
  end
  return v
end

return M
