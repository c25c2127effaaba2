-- The Docker Engine API client: the one module that knows the Engine's HTTP paths, query
-- strings and JSON shapes. The reconciler and supervisor use only the engine object that
-- docker.connect returns, so another backend (Swarm services, say) can stand behind it.
--
-- "notes §N" below cites /work/shared/notes/docker-engine-api.md, where the quirks come from.
-- Failures are `nil, message, code`: message is the engine's own text when it sent one,
-- code a short symbol (see CODES, plus "transport", "too_large", "badjson" and "failed" for errors
-- reported in-band under HTTP 200).
local json = require "mw.json"
local http = require "mw.http"
local fs = require "mw.fs"
local core = require "mw.core"
local frames = require "mw.frames"
local engine_spec = require "mw.engine_spec"

local docker = {}

docker.MIN_API = "1.41"          -- Debian 12's docker.io 20.10 (notes §1)
docker.MAX_API = "1.47"          -- the newest shape this client was written against
docker.DEFAULT_SOCKET = "/var/run/docker.sock"

local CALL_TIMEOUT = 120         -- ordinary calls; a busy engine can take a while to remove
local CONNECT_TIMEOUT = 5
local PING_TIMEOUT = 10
local DEDUPE_WINDOW = 1024       -- events remembered for dedupe after a resume
local MAX_ERROR_BODY = 64 * 1024 -- how much of a failed stream's body is read for its message
-- What one answer (not a stream) may hold in memory: the largest real ones (a list of
-- thousands of containers, an inspect with a long env) are a few MiB. README "Limits".
docker.MAX_ANSWER = 64 * 1024 * 1024

-- HTTP status -> code symbol. 304 is success for start/stop; the callers decide.
local CODES = {
  [304] = "notmodified", [400] = "bad", [401] = "forbidden", [403] = "forbidden",
  [404] = "notfound", [409] = "conflict",
}

local function status_code(status)
  if CODES[status] then return CODES[status] end
  if status >= 500 then return "server" end
  return "http" .. tostring(status)
end

---------------------------------------------------------------------------------------------
-- JSON lives in mw.json; the engine's bodies need explicit arrays and objects where a table
-- may be empty (Cmd/Env arrays, Labels/ExposedPorts/filters objects). Kept here by their old
-- names for the callers that build bodies or print JSON through this module.

docker.array, docker.object = json.array, json.object
docker.encode, docker.decode = json.encode, json.decode
local array, object, is_sequence = json.array, json.object, json.is_sequence
local function encode(v) return json.encode(v) end

---------------------------------------------------------------------------------------------
-- URLs

local function escape(s)
  return (tostring(s):gsub("[^%w%-%._~]", function(c) return string.format("%%%02X", c:byte()) end))
end

-- A path segment: names of images carry "/" and ":" which the Engine's router takes as is
-- (routes like /images/{name:.*}/json), so those stay; anything else is escaped.
local function seg(s)
  if type(s) ~= "string" or s == "" then error("docker: want a non-empty id or name, got " .. tostring(s), 3) end
  return (s:gsub("[^%w%-%._~:/@]", function(c) return string.format("%%%02X", c:byte()) end))
end

local function query_string(q)
  if not q then return "" end
  local keys = {}
  for k, v in pairs(q) do if v ~= nil then keys[#keys + 1] = k end end
  if #keys == 0 then return "" end
  table.sort(keys)
  local parts = {}
  for i, k in ipairs(keys) do
    local v = q[k]
    if type(v) == "boolean" then v = v and "1" or "0" end
    parts[i] = escape(k) .. "=" .. escape(v)
  end
  return "?" .. table.concat(parts, "&")
end

-- Filters as the Engine wants them: a JSON object of arrays of strings, e.g.
-- { label = {"used-by=millwright", "mw.stack=x"}, status = "running" }. A string value is a
-- one-element list; the old map form { ["k=v"] = true } is accepted too.
local function filters_json(f)
  if f == nil then return nil end
  if type(f) == "string" then return f end
  local o = object()
  for k, v in pairs(f) do
    local list = array()
    if type(v) == "string" then
      list[1] = v
    elseif type(v) == "table" and (is_sequence(v) or next(v) == nil) then
      for i, x in ipairs(v) do list[i] = tostring(x) end
    elseif type(v) == "table" then
      for x in pairs(v) do list[#list + 1] = tostring(x) end
      table.sort(list)
    else
      error("docker: filter " .. tostring(k) .. " wants a string or a list", 3)
    end
    o[k] = list
  end
  return encode(o)
end
docker.filters_json = filters_json

---------------------------------------------------------------------------------------------
-- Versions and hosts

local function parse_version(v)
  if type(v) ~= "string" then return nil end
  local a, b = v:match("^v?(%d+)%.(%d+)$")
  if not a then return nil end
  return tonumber(a), tonumber(b)
end

-- Compares "1.41"-style versions: -1, 0, 1 (nil when either does not parse).
function docker.version_cmp(a, b)
  local a1, a2 = parse_version(a)
  local b1, b2 = parse_version(b)
  if not a1 or not b1 then return nil end
  if a1 ~= b1 then return a1 < b1 and -1 or 1 end
  if a2 ~= b2 then return a2 < b2 and -1 or 1 end
  return 0
end

-- Parses DOCKER_HOST -> { kind = "unix", path } | { kind = "tcp", host, port } (each with
-- `where`, the canonical text for messages) | nil, err.
function docker.parse_host(host)
  if host == nil or host == "" then
    return { kind = "unix", path = docker.DEFAULT_SOCKET, where = "unix://" .. docker.DEFAULT_SOCKET }
  end
  local path = host:match("^unix://(/.+)$")
  if path then return { kind = "unix", path = path, where = "unix://" .. path } end
  local rest = host:match("^tcp://(.+)$")
  if rest then
    rest = rest:gsub("/$", "")
    local h, port
    if rest:sub(1, 1) == "[" then
      h, port = rest:match("^(%[[%x:%.]+%]):(%d+)$")
    else
      h, port = rest:match("^([%w%.%-_]+):(%d+)$")
    end
    port = tonumber(port)
    if h and port and port >= 1 and port <= 65535 then
      return { kind = "tcp", host = h, port = port, where = "tcp://" .. h .. ":" .. port }
    end
  end
  return nil, string.format('bad DOCKER_HOST "%s" (want unix:///path or tcp://host:port)', host)
end

-- Splits an image reference into the name and tag the pull endpoint wants; no tag means
-- "latest", because without one the Engine pulls every tag (notes §4).
function docker.split_image(ref)
  local name, digest = ref:match("^(.-)@(.+)$")
  if name then return name, digest end
  local base, tag = ref:match("^(.*):([%w_][%w_%.%-]*)$")
  if base and not tag:find("/", 1, true) and base ~= "" then return base, tag end
  return ref, "latest"
end

---------------------------------------------------------------------------------------------
-- The engine object and its transport

local Engine = {}
Engine.__index = Engine

function Engine:__tostring()
  return string.format("Docker %s (API %s) at %s", self.version or "?", self.api or "?", self.where)
end

local function count(self, kind, status)
  local key = kind .. " " .. tostring(status)
  self.calls[key] = (self.calls[key] or 0) + 1
  self.total = self.total + 1
end

-- The engine's own message from an error body ({"message": ...}), else the body's first
-- line, else the status.
local function engine_message(status, body)
  if body and body ~= "" then
    local v = docker.decode(body)
    if type(v) == "table" and type(v.message) == "string" and v.message ~= "" then return v.message end
    local line = body:match("^%s*([^\r\n]+)")
    if line then return line:sub(1, 200) end
  end
  return "HTTP " .. tostring(status)
end

-- Builds the request table for mw.http. opts: query, json (a value to encode), body,
-- headers, timeout (false = none), mode.
function Engine:_request(method, path, opts)
  local headers = {}
  if opts.headers then for k, v in pairs(opts.headers) do headers[k] = v end end
  local body = opts.body
  if opts.json ~= nil then
    body = encode(opts.json)
    headers["Content-Type"] = "application/json" -- else libcurl sends form-encoded: 400 (notes §2)
  elseif method == "POST" and body == nil then
    body = ""                                    -- an empty body, not a chunked one (notes §2)
  end
  local timeout = opts.timeout
  if timeout == nil then timeout = CALL_TIMEOUT elseif timeout == false then timeout = nil end
  local prefix = opts.unversioned and "" or ("/v" .. self.api)
  return {
    method = method,
    url = self.base .. prefix .. path .. query_string(opts.query),
    headers = headers,
    body = body,
    unix = self.unix,
    tls = self.tls,
    timeout = timeout,
    connect_timeout = CONNECT_TIMEOUT,
    mode = opts.mode,
    max_body = self.max_answer,   -- (a stream: the most it holds unread)
  }
end

function Engine:_transport_error(err)
  return string.format("Docker engine at %s: %s", self.where, tostring(err))
end

-- One request -> response (2xx) | nil, message, code, response.
-- Calls that may be repeated without harm are retried after a transport error or a 5xx
-- (not 501) at 0.1, 0.3 and 1 s: a reset connection or a hiccup of the engine is not a failure.
local RETRY = { 0.1, 0.3, 1 }

-- The fence (mw.coord, `mw run --coord`): while set, a call that may change something on
-- the engine (any method but GET and HEAD) goes out only when fence() says this mw still
-- holds its lease. Every engine call goes through _call or _stream, so this is the one gate.
function Engine:_fenced(kind, method, path)
  if self.fence and method ~= "GET" and method ~= "HEAD" and not self.fence() then
    count(self, kind, "fenced")
    return string.format("not sent to the Docker engine: this mw no longer holds the stack's lease (%s %s)", method, path)
  end
end

function Engine:_call(kind, method, path, opts)
  opts = opts or {}
  local fenced = self:_fenced(kind, method, path)
  if fenced then return nil, fenced, "fenced" end
  local again = opts.idempotent or method == "GET" or method == "HEAD" or method == "DELETE"
  local res, err, hcode
  for attempt = 1, #RETRY + 1 do
    if attempt > 1 then
      -- a retry comes after a sleep: the lease may be gone by now
      local refused = self:_fenced(kind, method, path)
      if refused then return nil, refused, "fenced" end
    end
    res, err, hcode = http.request(self:_request(method, path, opts))
    if hcode == "too_large" then
      -- the same call would get the same answer: not retried
      count(self, kind, "transport")
      return nil, string.format("Docker engine at %s: engine %s (%s %s)", self.where, err, method, path), "too_large"
    end
    local transient = not res or (res.status >= 500 and res.status ~= 501)
    if not again or not transient or attempt > #RETRY or not core.in_task() then break end
    count(self, kind, res and res.status or "transport")
    core.sleep(RETRY[attempt])
  end
  if not res then
    count(self, kind, "transport")
    return nil, self:_transport_error(err), "transport"
  end
  count(self, kind, res.status)
  if res.status >= 200 and res.status < 300 then return res end
  return nil, engine_message(res.status, res.body), status_code(res.status), res
end

-- One request whose answer is JSON -> value | nil, message, code.
function Engine:_json(kind, method, path, opts)
  local res, err, code = self:_call(kind, method, path, opts)
  if not res then return nil, err, code end
  local v, jerr = docker.decode(res.body)
  if v == nil then return nil, kind .. ": " .. jerr, "badjson" end
  return v
end

-- Opens a streamed response -> stream (2xx, headers arrived) | nil, message, code. On an
-- error status the body is read (bounded) for the engine's message.
function Engine:_stream(kind, method, path, opts)
  local fenced = self:_fenced(kind, method, path)
  if fenced then return nil, fenced, "fenced" end
  local st, err = http.stream(self:_request(method, path, opts))
  if not st then
    count(self, kind, "transport")
    return nil, self:_transport_error(err), "transport"
  end
  count(self, kind, st.status)
  if st.status >= 200 and st.status < 300 then return st end
  local parts, size = {}, 0
  while size < MAX_ERROR_BODY do
    local piece = st:read()
    if not piece then break end
    parts[#parts + 1] = piece
    size = size + #piece
  end
  st:close()
  return nil, engine_message(st.status, table.concat(parts, "\n")), status_code(st.status)
end

---------------------------------------------------------------------------------------------
-- Connecting

local function env_opts()
  return {
    host = os.getenv("DOCKER_HOST"),
    api_version = os.getenv("DOCKER_API_VERSION"),
    cert_path = os.getenv("DOCKER_CERT_PATH"),
    tls_verify = os.getenv("DOCKER_TLS_VERIFY"),
  }
end

-- Connects to the engine named by opts (host, api_version, cert_path, tls_verify; with no
-- opts at all, the DOCKER_* environment) -> engine | nil, err, code. Pings, negotiates the
-- API version and reads the engine's version.
function docker.connect(opts)
  opts = opts or env_opts()
  local target, err = docker.parse_host(opts.host)
  if not target then return nil, err, "bad" end
  local self = setmetatable({
    where = target.where, calls = {}, total = 0, api = nil, version = nil,
    max_answer = opts.max_answer or docker.MAX_ANSWER,
  }, Engine)

  if target.kind == "unix" then
    local st, serr, scode = fs.stat(target.path)
    -- fs.stat does not follow a final symlink (Docker Desktop's socket is one): resolve it.
    if st and st.type == "link" and fs.realpath then
      local real, rerr, rcode = fs.realpath(target.path)
      if real then st, serr, scode = fs.stat(real) else st, serr, scode = nil, rerr, rcode end
    end
    if not st then
      if scode == "ENOENT" or tostring(serr):find("No such file", 1, true) then
        return nil, string.format("no Docker engine at %s (no such file)", target.path), "notfound"
      end
      return nil, string.format("no Docker engine at %s (%s)", target.path, tostring(serr)), "notfound"
    end
    if st.type ~= "socket" then
      return nil, string.format("%s is not a socket", target.path), "bad"
    end
    self.unix = target.path
    self.base = "http://docker"   -- with a unix socket libcurl never resolves the host (notes §1)
  else
    local scheme = "http"
    if opts.cert_path and opts.cert_path ~= "" then
      -- TLS as the docker CLI does it: the three PEM files in DOCKER_CERT_PATH, and verify
      -- the server unless DOCKER_TLS_VERIFY is empty (notes §1).
      local dir = opts.cert_path:gsub("/$", "")
      local files = {}
      for _, f in ipairs({ "ca", "cert", "key" }) do
        local p = dir .. "/" .. f .. ".pem"
        if not fs.stat(p) then
          return nil, string.format("DOCKER_CERT_PATH %s has no %s.pem", dir, f), "bad"
        end
        files[f] = p
      end
      local verify = opts.tls_verify ~= nil and opts.tls_verify ~= ""
      self.tls = { ca = files.ca, cert = files.cert, key = files.key, verify = verify }
      scheme = "https"
    end
    self.base = scheme .. "://" .. target.host .. ":" .. target.port
  end

  local pinned = opts.api_version
  if pinned == "" then pinned = nil end
  if pinned then
    if not parse_version(pinned) then
      return nil, string.format('bad DOCKER_API_VERSION "%s" (want a version like 1.44)', pinned), "bad"
    end
    pinned = pinned:gsub("^v", "")
    if docker.version_cmp(pinned, docker.MIN_API) < 0 then
      return nil, string.format("DOCKER_API_VERSION %s is older than mw supports (%s or newer)",
        pinned, docker.MIN_API), "version"
    end
  end

  -- GET, not HEAD: the body ("OK") is part of telling an engine from some other server.
  local res, perr = http.request(self:_request("GET", "/_ping", {
    unversioned = true, timeout = PING_TIMEOUT,
  }))
  if not res then
    count(self, "_ping", "transport")
    return nil, string.format("no Docker engine answers at %s: %s", self.where, tostring(perr)), "transport"
  end
  count(self, "_ping", res.status)
  local daemon_api = res.headers and res.headers["api-version"]
  local body = res.body or ""
  if not parse_version(daemon_api) then
    local snippet = body:sub(1, 60):gsub("[%c]", " ")
    return nil, string.format('%s does not look like a Docker engine (HTTP %d, %s, body "%s")',
      self.where, res.status,
      daemon_api and ('api-version "' .. daemon_api .. '"') or "no api-version header",
      snippet), "notdocker"
  end
  if res.status ~= 200 then
    return nil, string.format("Docker engine at %s is not ready: %s", self.where,
      engine_message(res.status, body)), status_code(res.status)
  end
  self.daemon_api = daemon_api
  self.os = res.headers["ostype"]

  if pinned then
    self.api = pinned            -- DOCKER_API_VERSION disables negotiation (notes §1)
  else
    if docker.version_cmp(daemon_api, docker.MIN_API) < 0 then
      return nil, string.format(
        "Docker engine at %s speaks API %s; mw needs %s or newer (Docker 20.10 or later)",
        self.where, daemon_api, docker.MIN_API), "version"
    end
    -- Never hard-pin the minimum: Docker 29.0-29.2 refuse API < 1.44 by default (notes §1).
    self.api = docker.version_cmp(daemon_api, docker.MAX_API) < 0 and daemon_api or docker.MAX_API
  end

  -- The engine's version: Docker says it in every answer's Server header ("Docker/20.10.24
  -- (linux)"; moby api/server/middleware/version.go), the ping's included. GET /version is asked
  -- only of an engine that does not: dockerd answers it by running `runc --version` and
  -- `docker-init --version` (seen with strace; 6 ms here, 28 ms under strace, against 0.7 ms
  -- for the ping), at every mw command's start and in a cold start's way (issue 17 §4).
  local server = tostring(res.headers["server"] or "")
  self.version = server:match("^Docker/([%w%.%+%-~]+)")
  if not self.version then
    local v, verr, vcode = self:_json("version", "GET", "/version")
    if not v then
      return nil, string.format("Docker engine at %s: %s", self.where, verr), vcode
    end
    self.version = v.Version
  end
  return self
end

-- What to tell a person when docker.connect found no engine (code "notfound" or "transport"):
-- how to have one that stays up. `make run` and `make test` start a dockerd only for as long
-- as they run (scripts/with-engine.sh), so the next `mw status` finds none.
local NO_ENGINE_HINT = "to keep one running: scripts/engine.sh up (in mw's source tree; make run stops the " ..
  "dockerd it started), or the distribution's service (systemctl start docker)"

-- docker.connect's message, with the hint when no engine answered -> message.
function docker.explain(err, code)
  if code == "notfound" or code == "transport" then return tostring(err) .. "; " .. NO_ENGINE_HINT end
  return err
end

-- A docker.connect with the DOCKER_* environment.
function docker.from_env()
  return docker.connect(env_opts())
end

-- True when the API version in use is at least v.
function Engine:api_at_least(v)
  return docker.version_cmp(self.api, v) >= 0
end

-- Pings again (the engine may have restarted) -> true | nil, err, code.
function Engine:ping()
  local res, err, code = self:_call("_ping", "GET", "/_ping", { unversioned = true, timeout = PING_TIMEOUT })
  if not res then return nil, err, code end
  return true
end

---------------------------------------------------------------------------------------------
-- Containers

-- docker.container_spec(description) -> the create body (lua/mw/engine_spec.lua).
docker.container_spec = engine_spec.container
local command, env_list = engine_spec.command, engine_spec.env_list

-- Creates a container from a raw create body -> id, warnings | nil, err, code.
-- 404: image missing (create never pulls); 409: name in use.
function Engine:create(name, spec)
  local v, err, code = self:_json("containers/create", "POST", "/containers/create", {
    query = { name = name }, json = spec,
  })
  if not v then return nil, err, code end
  return v.Id, v.Warnings
end

-- One sample of a container's resource use -> stats | nil, err, code. one-shot (API 1.41+)
-- answers at once instead of waiting a second for a second sample; CPU use is computed by
-- the caller from two samples it took.
function Engine:stats(id)
  return self:_json("containers/stats", "GET", "/containers/" .. seg(id) .. "/stats",
    { query = { stream = "false", ["one-shot"] = "true" } })
end

-- Renames a container -> true | nil, err, code (409 when the name is taken).
function Engine:rename(id, name)
  local res, err, code = self:_call("containers/rename", "POST", "/containers/" .. seg(id) .. "/rename",
    { query = { name = name } })
  if not res then return nil, err, code end
  return true
end

-- true | true, "notmodified" (already running) | nil, err, code.
function Engine:start(id)
  local res, err, code = self:_call("containers/start", "POST", "/containers/" .. seg(id) .. "/start",
    { idempotent = true })     -- starting a running container is a 304, so a retry is harmless
  if res then return true end
  if code == "notmodified" then return true, "notmodified" end
  return nil, err, code
end

-- Stops with SIGTERM, then SIGKILL after t seconds -> true | true, "notmodified" | nil, err, code.
function Engine:stop(id, t)
  local res, err, code = self:_call("containers/stop", "POST", "/containers/" .. seg(id) .. "/stop", { idempotent = true,
    query = { t = t }, timeout = (t or 10) + CALL_TIMEOUT,  -- the call blocks ~t seconds
  })
  if res then return true end
  if code == "notmodified" then return true, "notmodified" end
  return nil, err, code
end

-- -> true | nil, err, code (409 "conflict" when not running).
function Engine:kill(id, signal)
  local res, err, code = self:_call("containers/kill", "POST", "/containers/" .. seg(id) .. "/kill", { idempotent = true,
    query = { signal = signal },
  })
  if not res then return nil, err, code end
  return true
end

-- opts: force, volumes (anonymous volumes) -> true | true, "gone" (404) | nil, err, code.
function Engine:remove(id, opts)
  opts = opts or {}
  local res, err, code = self:_call("containers/remove", "DELETE", "/containers/" .. seg(id), {
    query = { force = opts.force and "true" or nil, v = opts.volumes and "true" or nil },
  })
  if res then return true end
  if code == "notfound" then return true, "gone" end
  return nil, err, code
end

-- -> the inspect table | nil, err, code. State.Status is the one to read (notes §2).
function Engine:inspect(id)
  return self:_json("containers/inspect", "GET", "/containers/" .. seg(id) .. "/json")
end

-- Lists containers, stopped ones too -> list | nil, err, code. Filter by label: names are
-- unanchored regexps (notes §2, §9.2).
function Engine:list(filters)
  local v, err, code = self:_json("containers/list", "GET", "/containers/json", {
    query = { all = "1", filters = filters_json(filters) },
  })
  if not v then return nil, err, code end
  -- an engine that answers something else than a list of objects is not one we can trust
  if type(v) ~= "table" then return nil, "the engine's container list is not a list", "badjson" end
  for _, x in ipairs(v) do
    if type(x) ~= "table" or type(x.Id) ~= "string" then
      return nil, "the engine's container list has an entry that is not a container", "badjson"
    end
    if type(x.Labels) ~= "table" then x.Labels = {} end
  end
  return v
end

function Engine:pause(id)
  local res, err, code = self:_call("containers/pause", "POST", "/containers/" .. seg(id) .. "/pause")
  if not res then return nil, err, code end
  return true
end

function Engine:unpause(id)
  local res, err, code = self:_call("containers/unpause", "POST", "/containers/" .. seg(id) .. "/unpause")
  if not res then return nil, err, code end
  return true
end

local Waiter = {}
Waiter.__index = Waiter

-- Posts a wait and returns as soon as the engine accepted it (its headers flush before it
-- blocks), so it can be posted before start and miss no exit (notes §2, §9.3)
-- -> waiter | nil, err, code. condition: "not-running" (default), "next-exit", "removed".
function Engine:waiter(id, condition)
  local st, err, code = self:_stream("containers/wait", "POST", "/containers/" .. seg(id) .. "/wait", {
    query = { condition = condition or "not-running" }, mode = "raw", timeout = false,
  })
  if not st then return nil, err, code end
  return setmetatable({ st = st, engine = self }, Waiter)
end

-- Blocks until the condition -> exit status, error message or nil | nil, err, code.
function Waiter:result()
  local parts = {}
  while true do
    local chunk, err = self.st:read()
    if not chunk then
      if err ~= "eof" then self.st:close(); return nil, self.engine:_transport_error(err), "transport" end
      break
    end
    parts[#parts + 1] = chunk
  end
  self.st:close()
  local v, jerr = docker.decode(table.concat(parts))
  if type(v) ~= "table" then return nil, "wait: " .. tostring(jerr), "badjson" end
  return v.StatusCode, v.Error and v.Error.Message ~= "" and v.Error.Message or nil
end

function Waiter:close() self.st:close() end
Waiter.__close = Waiter.close

-- Waits for the condition -> exit status, error message or nil | nil, err, code.
function Engine:wait(id, condition)
  local w, err, code = self:waiter(id, condition)
  if not w then return nil, err, code end
  return w:result()
end

-- Runs cmd (a list, or a string for /bin/sh -c) in a running container and waits
-- -> exit code, output (stdout and stderr interleaved as produced), stderr alone
-- | nil, err, code. opts: env, user, workdir, timeout.
function Engine:exec(id, cmd, opts)
  opts = opts or {}
  local body = {
    Cmd = command(cmd, "cmd"), AttachStdout = true, AttachStderr = true, Tty = false,
    Env = opts.env and env_list(opts.env) or nil, User = opts.user, WorkingDir = opts.workdir,
  }
  local v, err, code = self:_json("containers/exec", "POST", "/containers/" .. seg(id) .. "/exec", { json = body })
  if not v then return nil, err, code end
  -- Without an Upgrade header the start call answers with the raw-stream frames and ends
  -- when the command does (notes §2, exec).
  local res, serr, scode = self:_call("exec/start", "POST", "/exec/" .. seg(v.Id) .. "/start", {
    json = object { Detach = false, Tty = false }, timeout = opts.timeout,
  })
  if not res then return nil, serr, scode end
  local d = frames.new()
  local fs_, derr = d:feed(res.body or "")
  if derr then return nil, "exec output: " .. derr, "badjson" end
  local all, errs = {}, {}
  for _, f in ipairs(fs_) do
    if f[1] == "error" then return nil, "exec: " .. f[2], "server" end
    all[#all + 1] = f[2]
    if f[1] == "stderr" then errs[#errs + 1] = f[2] end
  end
  -- The exit code can lag the end of the stream by a moment: poll briefly.
  for _ = 1, 100 do
    local info, ierr, icode = self:_json("exec/inspect", "GET", "/exec/" .. seg(v.Id) .. "/json")
    if not info then return nil, ierr, icode end
    if not info.Running and info.ExitCode ~= nil then
      return info.ExitCode, table.concat(all), table.concat(errs)
    end
    core.sleep(0.01)
  end
  return nil, "exec: command still running after its output ended", "timeout"
end

-- Interactive exec (`mw exec`): create, then start on a connection of its own that the
-- engine hijacks into a raw two-way stream, then resize and inspect by the exec's id.

-- Creates an exec -> exec id | nil, err, code. opts: tty, stdin (attach it), env, user,
-- workdir, size = { columns, rows } (the terminal's from the start: API 1.42+; before, only
-- the resize after start sets it). 409: the container is not running (or paused).
function Engine:exec_create(id, cmd, opts)
  opts = opts or {}
  local body = {
    Cmd = command(cmd, "cmd"), AttachStdin = opts.stdin and true or false, AttachStdout = true,
    AttachStderr = true, Tty = opts.tty and true or false,
    Env = opts.env and env_list(opts.env) or nil, User = opts.user, WorkingDir = opts.workdir,
  }
  if opts.tty and opts.size and self:api_at_least("1.42") then
    body.ConsoleSize = array { opts.size[2], opts.size[1] }    -- [height, width]
  end
  local v, err, code = self:_json("containers/exec", "POST", "/containers/" .. seg(id) .. "/exec", { json = body })
  if not v then return nil, err, code end
  return v.Id
end

-- Starts an exec on a connection of its own and takes the connection over: the request
-- asks `Connection: Upgrade, Upgrade: tcp`, the engine answers 101 and from then on the
-- socket carries the command's stdin one way and its output the other (framed as logs are
-- unless tty; notes §2, §6) -> conn (mw.net), bytes of the stream already read
-- | nil, err, code. libcurl cannot hand a connection over, so this speaks HTTP itself; not
-- over TLS (DOCKER_CERT_PATH).
function Engine:exec_attach(exec_id, tty)
  if self.tls then
    return nil, "mw exec does not speak TLS to the engine yet (DOCKER_CERT_PATH is set)", "bad"
  end
  local net = require "mw.net"
  local conn, err
  local hostname = "docker"
  if self.unix then
    conn, err = net.connect("unix:" .. self.unix, nil, CONNECT_TIMEOUT)
  else
    local host, port = self.base:match("^http://%[?([^%]]+)%]?:(%d+)$")
    hostname = self.base:match("^http://(.*)$")
    if host == "localhost" then host = "127.0.0.1" end
    if not host:match("^[%d%.]+$") and not host:find(":", 1, true) then
      -- mw.net takes addresses, not names
      return nil, "mw exec needs DOCKER_HOST as an address (tcp://127.0.0.1:2375), not the name " .. host, "bad"
    end
    conn, err = net.connect(host, tonumber(port), CONNECT_TIMEOUT)
  end
  if not conn then return nil, self:_transport_error(err), "transport" end
  local body = encode(object { Detach = false, Tty = tty and true or false })
  conn:write(table.concat {
    "POST /v", self.api, "/exec/", seg(exec_id), "/start HTTP/1.1\r\n",
    "Host: ", hostname, "\r\n",
    "User-Agent: mw\r\n",
    "Content-Type: application/json\r\n",
    "Connection: Upgrade\r\n",
    "Upgrade: tcp\r\n",
    "Content-Length: ", #body, "\r\n\r\n", body })
  -- the answer's head, then either the stream (101, or 200 from an engine that does not
  -- upgrade) or an error with its JSON body
  local got = ""
  local head_end
  while true do
    head_end = got:find("\r\n\r\n", 1, true)
    if head_end then break end
    if #got > 64 * 1024 then conn:close() return nil, "exec start: answer head too long", "badjson" end
    local chunk, rerr = conn:read(CALL_TIMEOUT)
    if not chunk then
      conn:close()
      return nil, self:_transport_error("exec start: " .. tostring(rerr)), "transport"
    end
    got = got .. chunk
  end
  local head, rest = got:sub(1, head_end - 1), got:sub(head_end + 4)
  local status = tonumber(head:match("^HTTP/%d%.?%d? (%d%d%d)"))
  count(self, "exec/start", status or "transport")
  if status == 101 or status == 200 then return conn, rest end
  if not status then conn:close() return nil, "exec start: not an HTTP answer", "badjson" end
  local length = tonumber(head:lower():match("\r\ncontent%-length:%s*(%d+)") or "")
  while length and #rest < length and #rest < MAX_ERROR_BODY do
    local chunk = conn:read(CALL_TIMEOUT)
    if not chunk then break end
    rest = rest .. chunk
  end
  conn:close()
  return nil, engine_message(status, rest), status_code(status)
end

-- Tells the exec's pseudo-terminal its window size -> true | nil, err, code.
function Engine:exec_resize(exec_id, columns, rows)
  local res, err, code = self:_call("exec/resize", "POST", "/exec/" .. seg(exec_id) .. "/resize", {
    query = { h = rows, w = columns },
  })
  if not res then return nil, err, code end
  return true
end

-- An exec's state -> { Running, ExitCode, Pid, ... } | nil, err, code. Pid is the process's
-- on the host, 0 before it started.
function Engine:exec_inspect(exec_id)
  return self:_json("exec/inspect", "GET", "/exec/" .. seg(exec_id) .. "/json")
end

---------------------------------------------------------------------------------------------
-- Logs

local Logs = {}
Logs.__index = Logs

-- Opens the logs of a container -> reader | nil, err, code. opts: follow, tail (n or
-- "all"), since (unix seconds), timestamps, tty (skip the inspect that finds out).
-- Without a TTY the stream is framed; with one it is raw text (notes §6).
function Engine:logs(id, opts)
  opts = opts or {}
  local tty = opts.tty
  if tty == nil then
    local info, err, code = self:inspect(id)
    if not info then return nil, err, code end
    tty = info.Config and info.Config.Tty or false
  end
  local st, err, code = self:_stream("containers/logs", "GET", "/containers/" .. seg(id) .. "/logs", {
    query = {
      stdout = "1", stderr = "1",
      follow = opts.follow and "1" or nil,
      tail = opts.tail and tostring(opts.tail) or nil,
      since = opts.since and tostring(opts.since) or nil,
      timestamps = opts.timestamps and "1" or nil,
    },
    mode = "raw",
    timeout = (not opts.follow) and CALL_TIMEOUT or false,
  })
  if not st then return nil, err, code end
  return setmetatable({
    st = st, tty = tty, timestamps = opts.timestamps,
    demux = (not tty) and frames.new() or nil, lines = frames.lines(),
    queue = {}, head = 1, done = nil,
  }, Logs)
end

local function push(self, stream, text)
  self.queue[#self.queue + 1] = { stream, text }
end

-- -> stream ("stdout" | "stderr"), line[, timestamp] | nil, "eof" | nil, err.
-- A stream-3 frame (an error from the daemon itself) comes back as nil, "engine: <text>".
function Logs:next()
  while true do
    local item = self.queue[self.head]
    if item then
      self.queue[self.head] = nil
      self.head = self.head + 1
      if item[1] == "error" then return nil, "engine: " .. item[2] end
      if self.timestamps then
        local ts, text = item[2]:match("^(%S+) (.*)$")
        if ts then return item[1], text, ts end
      end
      return item[1], item[2]
    end
    self.queue, self.head = {}, 1
    if self.done then return nil, self.done end
    local chunk, err = self.st:read()
    if not chunk then
      self.done = err or "eof"
      for _, l in ipairs(self.lines:flush()) do push(self, l[1], l[2]) end
      if self.done == "eof" and self.demux and self.demux:pending() then
        self.done = "logs: stream ended inside a frame"
      end
      self.st:close()
    elseif self.tty then
      for _, l in ipairs(self.lines:feed("stdout", chunk)) do push(self, l[1], l[2]) end
    else
      local fs_, derr = self.demux:feed(chunk)
      for _, f in ipairs(fs_) do
        if f[1] == "error" then
          push(self, "error", f[2])
        else
          for _, l in ipairs(self.lines:feed(f[1], f[2])) do push(self, l[1], l[2]) end
        end
      end
      if derr then
        self.done = "logs: " .. derr
        self.st:close()
      end
    end
  end
end

function Logs:close()
  self.done = self.done or "closed"
  self.st:close()
end
Logs.__close = Logs.close   -- `local r <close> = engine:logs(...)` ends the transfer on error

---------------------------------------------------------------------------------------------
-- Events

local Events = {}
Events.__index = Events

-- Larger of two timeNano digit strings (no documented ordering: notes §5).
local function later(a, b)
  if a == nil then return b end
  if #a ~= #b then return #a > #b and a or b end
  return a > b and a or b
end

local function nano_to_since(nano)
  if #nano <= 9 then return "0." .. string.rep("0", 9 - #nano) .. nano end
  return nano:sub(1, -10) .. "." .. nano:sub(-9)
end

-- Opens an event stream -> stream | nil, err, code. opts: filters, since ("sec.nsec"),
-- until, dedupe (how many recent events to remember, default 1024).
-- A slow reader loses events (notes §5): read it from a task that does nothing else.
-- Give a fresh stream a since too (a second ago, say): the engine flushes its response
-- headers before it subscribes (moby getEvents), so an event in between would be lost;
-- since replays it, and the dedupe drops what comes twice.
function Engine:events(opts)
  opts = opts or {}
  local ev = setmetatable({
    engine = self, filters = opts.filters, until_ = opts["until"],
    last_time = opts.since, last_nano = nil,
    seen = {}, ring = {}, ring_pos = 0, window = opts.dedupe or DEDUPE_WINDOW,
    junk = 0, dups = 0, count = 0, st = nil,
  }, Events)
  local ok, err, code = ev:_open()
  if not ok then return nil, err, code end
  return ev
end

function Events:_open()
  local st, err, code = self.engine:_stream("events", "GET", "/events", {
    query = { filters = filters_json(self.filters), since = self.last_time, ["until"] = self.until_ },
    mode = "lines", timeout = false,   -- no heartbeat: an idle stream is not a dead one
  })
  if not st then return nil, err, code end
  self.st = st
  return true
end

local function remember(self, key)
  self.ring_pos = self.ring_pos % self.window + 1
  local old = self.ring[self.ring_pos]
  if old then self.seen[old] = nil end
  self.ring[self.ring_pos] = key
  self.seen[key] = true
end

-- -> event | nil, "eof" | nil, err. event.timeNano is the exact digit string (a double
-- loses the last digits). Lines that are not JSON are counted in self.junk and skipped;
-- repeats of (Actor.ID, Action, timeNano) are counted in self.dups and skipped.
function Events:next()
  while true do
    if not self.st then return nil, "closed" end
    local line, err = self.st:read()
    if not line then return nil, err or "eof" end
    line = line:gsub("^\30", "")   -- a json-seq record separator, should one ever come
    if line:find("%S") then
      -- The top-level timeNano is the last unquoted one (moby's struct order).
      local nano
      for digits in line:gmatch('"timeNano"%s*:%s*(%d+)') do nano = digits end
      local ev = docker.decode(line)
      if type(ev) ~= "table" or (ev.Actor ~= nil and type(ev.Actor) ~= "table") then
        self.junk = self.junk + 1
      else
        if nano then ev.timeNano = nano
        elseif ev.time then nano = string.format("%d", ev.time) .. "000000000"; ev.timeNano = nano end
        local actor = ev.Actor or {}
        local key = table.concat({ tostring(actor.ID or ev.id or ""), tostring(ev.Action or ev.status or ""),
          tostring(nano or "") }, "\0")
        if self.seen[key] then
          self.dups = self.dups + 1
        else
          remember(self, key)
          if nano then
            self.last_nano = later(self.last_nano, nano)
            self.last_time = nano_to_since(self.last_nano)
          end
          self.count = self.count + 1
          return ev
        end
      end
    end
  end
end

-- Reopens the stream from last_time, keeping the dedupe memory, so events replayed by
-- `since` are not delivered twice -> true | nil, err, code. Callers should list after it:
-- events are not a reliable log (notes §9.1). opts.until bounds the new stream.
function Events:reconnect(opts)
  if self.st then self.st:close(); self.st = nil end
  if opts and opts["until"] then self.until_ = opts["until"] end
  return self:_open()
end

function Events:close()
  if self.st then self.st:close(); self.st = nil end
end
Events.__close = Events.close

---------------------------------------------------------------------------------------------
-- Networks, volumes and images: lua/mw/docker_objects.lua.
require "mw.docker_objects"(Engine, docker, { seg = seg, filters_json = filters_json })

docker.Engine = Engine
return docker
