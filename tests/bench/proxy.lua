-- A counting forwarder between mw and the engine: listens on a unix socket, pipes each
-- connection to the engine's socket both ways, and counts the HTTP requests going up (request
-- lines, skipping Content-Length and chunked bodies), by method and path shape.
local core = require "mw.core"
local net = require "mw.net"
local fs = require "mw.fs"

local P = {}

-- "/v1.41/containers/3f...e1/json?x=1" -> "/containers/{id}/json"
local function shape(path)
  path = path:gsub("%?.*$", ""):gsub("^/v%d+%.%d+", "")
  path = path:gsub("^/containers/([^/]+)", function(seg)
    if seg == "json" or seg == "create" or seg == "prune" then return "/containers/" .. seg end
    return "/containers/{id}"
  end)
  path = path:gsub("^/exec/[^/]+", "/exec/{id}"):gsub("^/networks/([^/]+)", function(seg)
    if seg == "create" or seg == "prune" then return "/networks/" .. seg end
    return "/networks/{id}"
  end)
  path = path:gsub("^/images/([^/].*)/json$", "/images/{name}/json")
  return path
end
P.shape = shape

-- Parses the client->engine byte stream: one state machine per connection.
local function parser(self)
  local buf, state, left = "", "head", 0
  local function count(method, path)
    self.count = self.count + 1
    local k = method .. " " .. shape(path)
    self.kinds[k] = (self.kinds[k] or 0) + 1
    if self.on_request then self.on_request(method, path) end
  end
  return function(data)
    buf = buf .. data
    while true do
      if state == "head" then
        local e = buf:find("\r\n\r\n", 1, true)
        if not e then return end
        local head = buf:sub(1, e + 3)
        buf = buf:sub(e + 4)
        local method, path = head:match("^(%u+) (%S+) HTTP/")
        if method then count(method, path) end
        local len = tonumber(head:match("\r\n[Cc]ontent%-[Ll]ength:%s*(%d+)"))
        if head:lower():find("\r\ntransfer%-encoding:%s*chunked") then
          state = "chunk"
        elseif len and len > 0 then
          state, left = "body", len
        end
      elseif state == "body" then
        if #buf == 0 then return end
        local take = math.min(left, #buf)
        buf = buf:sub(take + 1)
        left = left - take
        if left == 0 then state = "head" end
      elseif state == "chunk" then
        local e = buf:find("\r\n", 1, true)
        if not e then return end
        local size = tonumber(buf:sub(1, e - 1):match("^%x+"), 16) or 0
        if size == 0 then
          local t = buf:find("\r\n\r\n", e - 1, true)
          if not t then return end
          buf = buf:sub(t + 4)
          state = "head"
        else
          if #buf < e + 1 + size + 2 then return end
          buf = buf:sub(e + 2 + size + 2)
        end
      end
    end
  end
end

-- Starts the forwarder -> proxy { count, kinds, conns, stop() }.
function P.start(path, upstream)
  upstream = upstream or "/var/run/docker.sock"
  fs.remove(path)
  local srv = assert(net.listen("unix:" .. path))
  local self = { count = 0, kinds = {}, conns = 0, open = 0, path = path }
  local live = {}
  self.task = core.spawn(function()
    while true do
      local c = srv:accept()
      if not c then return end
      self.conns = self.conns + 1
      core.spawn(function()
        local up, err = net.connect("unix:" .. upstream, nil, 5)
        if not up then c:close() print("proxy: cannot reach the engine: " .. tostring(err)) return end
        self.open = self.open + 1
        live[c] = up
        local feed = parser(self)
        local down = core.spawn(function()
          while true do
            local d = up:read()
            if not d then break end
            c:write(d)
          end
          core.sleep(0.01)       -- let the last write drain before closing
          c:close()
        end, "proxy-down")
        while true do
          local d = c:read()
          if not d then break end
          feed(d)
          up:write(d)
        end
        core.sleep(0.01)
        up:close()
        core.join(down)
        live[c] = nil
        self.open = self.open - 1
      end, "proxy-conn")
    end
  end, "proxy")
  function self.snapshot()
    local k = {}
    for n, v in pairs(self.kinds) do k[n] = v end
    return { count = self.count, kinds = k }
  end
  function self.stop()
    srv:close()
    for c, up in pairs(live) do c:close(); up:close() end
    fs.remove(path)
  end
  return self
end

-- Differences of two snapshots -> count, "k n, k n" (largest first).
function P.diff(a, b)
  local parts = {}
  for k, v in pairs(b.kinds) do
    local d = v - (a.kinds[k] or 0)
    if d > 0 then parts[#parts + 1] = { k, d } end
  end
  table.sort(parts, function(x, y) return x[2] > y[2] end)
  local s = {}
  for i, p in ipairs(parts) do s[i] = p[1] .. " ×" .. p[2] end
  return b.count - a.count, table.concat(s, ", ")
end

return P
