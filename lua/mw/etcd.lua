-- A small etcd v3 client over etcd's JSON gateway (plain HTTP or HTTPS through libcurl; no gRPC):
-- leases, elections, a prefix range. Facts it relies on (etcd 3.4 API reference,
-- https://etcd.io/docs/v3.4/dev-guide/api_grpc_gateway/, and checked by hand with Debian's
-- etcd 3.4.23): every call is a POST of one JSON object to /v3/...; keys, values and
-- election names are base64; 64-bit ids (lease ids, revisions) are JSON strings; an
-- error answers {"error","message","code"} with a gRPC code; /v3/lease/keepalive answers one
-- {"result":{...}} per request object and ends when the request body does; an expired or
-- revoked lease renews with no TTL in the result (read as 0).
local core = require "mw.core"
local http = require "mw.http"
local cjson = require "cjson"

local etcd = {}

-- ---- base64 (RFC 4648 §4, with padding) ----

local B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
local B64_INDEX = {}
for i = 1, 64 do B64_INDEX[B64:byte(i)] = i - 1 end

function etcd.b64(s)
  local out = {}
  for i = 1, #s, 3 do
    local a, b, c = s:byte(i, i + 2)
    local n = (a << 16) | ((b or 0) << 8) | (c or 0)
    out[#out + 1] = B64:sub((n >> 18) + 1, (n >> 18) + 1) .. B64:sub(((n >> 12) & 63) + 1, ((n >> 12) & 63) + 1)
      .. (b and B64:sub(((n >> 6) & 63) + 1, ((n >> 6) & 63) + 1) or "=")
      .. (c and B64:sub((n & 63) + 1, (n & 63) + 1) or "=")
  end
  return table.concat(out)
end

function etcd.unb64(s)
  if type(s) ~= "string" then return nil end
  s = s:gsub("=+$", "")
  local out, bits, nbits = {}, 0, 0
  for i = 1, #s do
    local v = B64_INDEX[s:byte(i)]
    if not v then return nil end
    bits = ((bits << 6) | v) & 0xffffff
    nbits = nbits + 6
    if nbits >= 8 then
      nbits = nbits - 8
      out[#out + 1] = string.char((bits >> nbits) & 255)
    end
  end
  return table.concat(out)
end

-- The range end that selects every key starting with prefix (etcd's "prefix" convention:
-- the prefix with its last byte incremented).
function etcd.prefix_end(prefix)
  for i = #prefix, 1, -1 do
    local b = prefix:byte(i)
    if b < 255 then return prefix:sub(1, i - 1) .. string.char(b + 1) end
  end
  return "\0"
end

-- A lease id as etcd names the election key it makes: name .. "/" .. lowercase hex.
function etcd.lease_hex(id)
  local n = math.tointeger(tonumber(id))
  if not n then return nil end
  return string.format("%x", n)
end

-- ---- the address ----

-- etcd://host:port[,host:port...][/prefix] (etcds:// for HTTPS) -> { endpoints = { url... },
-- prefix = "/mw" } | nil, message.
function etcd.parse(url, tls)
  if type(url) ~= "string" then return nil, "the coordination address must be a string" end
  local scheme, rest = url:match("^(etcds?)://(.+)$")
  if not scheme then return nil, "coordination address " .. url .. ": expected etcd://host:port[,host:port...][/prefix]" end
  local hosts, prefix = rest:match("^([^/]+)(/.*)$")
  if not hosts then hosts, prefix = rest, "/mw" end
  prefix = prefix:gsub("/+$", "")
  if prefix == "" then prefix = "/mw" end
  local https = scheme == "etcds" or (tls and (tls.ca or tls.cert)) and true or false
  local endpoints = {}
  for hp in hosts:gmatch("[^,]+") do
    local host, port = hp:match("^%[([%x:]+)%]:(%d+)$")
    if not host then host, port = hp:match("^([%w.-]+):(%d+)$") end
    if not host then host, port = hp:match("^([%w.-]+)$"), "2379" end
    local p = math.tointeger(tonumber(port))
    if not host or not p or p < 1 or p > 65535 then
      return nil, "coordination address " .. url .. ": bad member " .. hp .. " (expected host:port)"
    end
    endpoints[#endpoints + 1] = (https and "https://" or "http://") .. (hp:find("^%[") and "[" .. host .. "]" or host) .. ":" .. p
  end
  if #endpoints == 0 then return nil, "coordination address " .. url .. ": no members" end
  return { endpoints = endpoints, prefix = prefix, https = https }
end

-- ---- the client ----

local Client = {}
Client.__index = Client

-- etcd.client{ endpoints, tls = { ca, cert, key }, user, password, timeout } -> client
function etcd.client(o)
  return setmetatable({ endpoints = o.endpoints, tls = o.tls, user = o.user, password = o.password,
                        timeout = o.timeout or 2, at = 1 }, Client)
end

local function decode(body)
  local ok, v = pcall(cjson.decode, body or "")
  if ok and type(v) == "table" then return v end
  return nil
end

function Client:_post(base, path, body, timeout)
  local headers = { ["Content-Type"] = "application/json" }
  if self.token then headers.Authorization = self.token end
  return http.request {
    method = "POST", url = base .. path, body = cjson.encode(body), headers = headers,
    tls = self.tls, timeout = timeout, connect_timeout = math.min(timeout or 2, 2),
  }
end

function Client:_authenticate(base, timeout)
  local res, err = self:_post(base, "/v3/auth/authenticate", { name = self.user, password = self.password }, timeout)
  if not res then return nil, err end
  local v = decode(res.body)
  if res.status ~= 200 or not v or type(v.token) ~= "string" then
    return nil, "authentication failed: " .. tostring(v and v.message or ("HTTP " .. res.status))
  end
  self.token = v.token
  return true
end

-- One call -> decoded answer | nil, message, kind. kind is "unreachable" when no member
-- answered, else "etcd" (an error answer; the message is etcd's). A member that does not
-- answer is skipped for the next one; the one that answered is tried first next time.
-- opts.timeout: seconds per member (false: none, for a campaign).
function Client:call(path, body, opts)
  opts = opts or {}
  local timeout = opts.timeout
  if timeout == nil then timeout = self.timeout elseif timeout == false then timeout = nil end
  local last = "no member answered"
  local n = #self.endpoints
  for k = 0, n - 1 do
    local i = (self.at - 1 + k) % n + 1
    local base = self.endpoints[i]
    local ok, aerr = true, nil
    if self.user and not self.token then ok, aerr = self:_authenticate(base, timeout) end
    if ok then
      local res, err = self:_post(base, path, body, timeout)
      if res then
        local v = decode(res.body)
        if res.status == 200 and v then
          self.at = i
          return v
        end
        local msg = v and (v.message or v.error) or ("HTTP " .. res.status)
        if self.user and tostring(msg):find("auth token") then
          -- an expired simple token: authenticate again, once
          self.token = nil
          local aok = self:_authenticate(base, timeout)
          if aok then
            res = self:_post(base, path, body, timeout)
            v = res and decode(res.body)
            if res and res.status == 200 and v then self.at = i return v end
            msg = v and (v.message or v.error) or msg
          end
        end
        -- gRPC Unavailable (14) or DeadlineExceeded (4): this member cannot serve now (no
        -- quorum, a leader election); another may
        local code = v and tonumber(v.code)
        if v and code ~= 14 and code ~= 4 then
          self.at = i
          return nil, tostring(msg), "etcd", v
        end
        last = base .. ": " .. tostring(msg)
      else
        last = base .. ": " .. tostring(err)
      end
    else
      last = base .. ": " .. tostring(aerr)
    end
    if not core.in_task() then break end
  end
  return nil, last, "unreachable"
end

-- -> lease id (string), granted TTL | nil, message, kind
function Client:grant(ttl)
  local v, err, kind = self:call("/v3/lease/grant", { TTL = ttl })
  if not v then return nil, err, kind end
  if v.error then return nil, tostring(v.error), "etcd" end
  return tostring(v.ID), tonumber(v.TTL)
end

-- -> remaining TTL (0: the lease is gone) | nil, message, kind
function Client:keepalive(id, timeout)
  local v, err, kind = self:call("/v3/lease/keepalive", { ID = id }, { timeout = timeout })
  if not v then
    if kind == "etcd" and err:find("not found") then return 0 end
    return nil, err, kind
  end
  local r = v.result
  if type(r) ~= "table" then
    local msg = v.error and (v.error.message or v.error) or "no result"
    if tostring(msg):find("not found") then return 0 end
    return nil, "keepalive: " .. tostring(msg), "etcd"
  end
  return tonumber(r.TTL) or 0
end

function Client:revoke(id, timeout)
  local v, err, kind = self:call("/v3/lease/revoke", { ID = id }, { timeout = timeout })
  if not v and not (kind == "etcd" and err:find("not found")) then return nil, err, kind end
  return true
end

-- -> { ttl, granted } | nil, message, kind
function Client:timetolive(id)
  local v, err, kind = self:call("/v3/lease/timetolive", { ID = id })
  if not v then return nil, err, kind end
  return { ttl = tonumber(v.TTL) or -1, granted = tonumber(v.grantedTTL) or 0 }
end

-- Blocks until this lease's key leads the election -> leader key (raw) | nil, message, kind
function Client:campaign(name, lease, value)
  local v, err, kind = self:call("/v3/election/campaign", { name = etcd.b64(name), lease = lease, value = etcd.b64(value) },
    { timeout = false })
  if not v then return nil, err, kind end
  if type(v.leader) ~= "table" then return nil, "campaign: no leader in the answer", "etcd" end
  return etcd.unb64(v.leader.key)
end

-- -> { key, value, lease, rev } | false (no leader) | nil, message, kind
function Client:leader(name)
  local v, err, kind = self:call("/v3/election/leader", { name = etcd.b64(name) })
  if not v then
    if kind == "etcd" and err:find("no leader") then return false end
    return nil, err, kind
  end
  if type(v.kv) ~= "table" then return false end
  return { key = etcd.unb64(v.kv.key), value = etcd.unb64(v.kv.value or ""), lease = v.kv.lease,
           rev = tonumber(v.kv.create_revision) }
end

-- Every key under prefix, oldest first -> { {key, value, lease, rev}... } | nil, message, kind
function Client:range_prefix(prefix)
  local v, err, kind = self:call("/v3/kv/range", {
    key = etcd.b64(prefix), range_end = etcd.b64(etcd.prefix_end(prefix)),
    sort_order = "ASCEND", sort_target = "CREATE",
  })
  if not v then return nil, err, kind end
  local out = {}
  for _, kv in ipairs(v.kvs or {}) do
    out[#out + 1] = { key = etcd.unb64(kv.key), value = etcd.unb64(kv.value or ""), lease = kv.lease,
                      rev = tonumber(kv.create_revision) }
  end
  table.sort(out, function(a, b) return (a.rev or 0) < (b.rev or 0) end)
  return out
end

return etcd
