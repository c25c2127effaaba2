-- The engine's networks, volumes and images: methods of mw.docker's engine object, kept in a
-- file of their own. Same conventions as mw.docker (failures `nil, message, code`; "notes §N"
-- cites /work/shared/notes/docker-engine-api.md).
local json = require "mw.json"

local methods = {}

local array, object = json.array, json.object
local function encode(v) return json.encode(v) end
-- mw.docker's own helpers, given by install: a URL path segment, label filters as the engine
-- wants them, and the module (for split_image).
local seg, filters_json, docker

---------------------------------------------------------------------------------------------
-- Networks

function methods:network_list(filters)
  return self:_json("networks/list", "GET", "/networks", { query = { filters = filters_json(filters) } })
end

-- -> id, warning | nil, err, code. CheckDuplicate below 1.44: without it 20.10 happily
-- creates a second network of the same name (notes §3, §9.6).
function methods:network_create(name, labels, opts)
  opts = opts or {}
  local lab = object()
  for k, v in pairs(labels or {}) do lab[k] = tostring(v) end
  local body = {
    Name = name, Driver = opts.driver or "bridge", Labels = lab,
    Internal = opts.internal, Attachable = opts.attachable,
  }
  -- a user-configured subnet: the engine gives static addresses only on such a network
  if opts.subnet then body.IPAM = { Driver = "default", Config = array { { Subnet = opts.subnet, Gateway = opts.gateway } } } end
  if not self:api_at_least("1.44") then body.CheckDuplicate = true end
  local v, err, code = self:_json("networks/create", "POST", "/networks/create", { json = body })
  if not v then return nil, err, code end
  return v.Id, (v.Warning ~= "" and v.Warning or nil)
end

function methods:network_inspect(id)
  return self:_json("networks/inspect", "GET", "/networks/" .. seg(id))
end

-- -> true | true, "already" (403 "already exists in network", notes §3) | nil, err, code.
-- opts.ipv4_address: a static address (EndpointConfig.IPAMConfig.IPv4Address).
function methods:network_connect(net, container, aliases, opts)
  local al = array()
  for i, a in ipairs(aliases or {}) do al[i] = a end
  local endpoint = { Aliases = al }
  if opts and opts.ipv4_address then endpoint.IPAMConfig = { IPv4Address = opts.ipv4_address } end
  local res, err, code = self:_call("networks/connect", "POST", "/networks/" .. seg(net) .. "/connect", { idempotent = true,
    json = { Container = container, EndpointConfig = endpoint },
  })
  if res then return true end
  if code == "forbidden" and (err:find("already exists in network", 1, true)
      or err:find("already attached", 1, true)) then
    return true, "already"
  end
  return nil, err, code
end

-- -> true | true, "gone" (not connected) | nil, err, code.
function methods:network_disconnect(net, container, force)
  local res, err, code = self:_call("networks/disconnect", "POST", "/networks/" .. seg(net) .. "/disconnect", { idempotent = true,
    json = { Container = container, Force = force and true or false },
  })
  if res then return true end
  if err and err:find("is not connected", 1, true) then return true, "gone" end
  return nil, err, code
end

-- -> true | true, "gone" | nil, err, code (403 "forbidden" while endpoints remain).
function methods:network_remove(id)
  local res, err, code = self:_call("networks/remove", "DELETE", "/networks/" .. seg(id))
  if res then return true end
  if code == "notfound" then return true, "gone" end
  return nil, err, code
end

---------------------------------------------------------------------------------------------
-- Volumes

-- -> name | nil, err, code. Creating an existing volume returns it (the Engine is idempotent).
function methods:volume_create(name, labels, opts)
  opts = opts or {}
  local lab = object()
  for k, v in pairs(labels or {}) do lab[k] = tostring(v) end
  local v, err, code = self:_json("volumes/create", "POST", "/volumes/create", {
    json = { Name = name, Driver = opts.driver or "local", Labels = lab },
  })
  if not v then return nil, err, code end
  return v.Name
end

function methods:volume_list(filters)
  local v, err, code = self:_json("volumes/list", "GET", "/volumes", { query = { filters = filters_json(filters) } })
  if not v then return nil, err, code end
  return v.Volumes or {}
end

function methods:volume_inspect(name)
  return self:_json("volumes/inspect", "GET", "/volumes/" .. seg(name))
end

-- -> true | true, "gone" | nil, err, code (409 while in use).
function methods:volume_remove(name, force)
  local res, err, code = self:_call("volumes/remove", "DELETE", "/volumes/" .. seg(name), {
    query = { force = force and "true" or nil },
  })
  if res then return true end
  if code == "notfound" then return true, "gone" end
  return nil, err, code
end

---------------------------------------------------------------------------------------------
-- Images

-- Emits each line of a build's "stream" text.
local function emit_lines(on_line, text)
  if not on_line then return end
  for line in text:gmatch("([^\n]*)\n?") do
    line = line:gsub("\r$", "")
    if line ~= "" then on_line(line) end
  end
end

-- Builds an image with the classic builder (BuildKit needs session endpoints: notes §4).
-- o: context_tar (a tar, gzip allowed), tag, dockerfile, labels, buildargs, target,
-- nocache, on_line(text) -> image id | nil, err, code. Errors arrive in-band under HTTP
-- 200 (notes §4, §9.7): they come back with code "failed".
function methods:build(o)
  if type(o.context_tar) ~= "string" then error("build: context_tar (a string) is required", 2) end
  local q = {
    rm = "1", forcerm = "1", pull = o.pull and "1" or "0", version = "1",
    t = o.tag, dockerfile = o.dockerfile, target = o.target, nocache = o.nocache and "1" or nil,
  }
  if o.labels then q.labels = encode(object(o.labels)) end
  if o.buildargs then q.buildargs = encode(object(o.buildargs)) end
  local st, err, code = self:_stream("build", "POST", "/build", {
    query = q, body = o.context_tar, mode = "lines", timeout = false,
    -- An empty Expect: stops libcurl waiting for 100-continue on bodies > 1 MB (notes §8).
    headers = { ["Content-Type"] = "application/x-tar", ["Expect"] = "" },
  })
  if not st then return nil, err, code end
  local id, built
  while true do
    local line, rerr = st:read()
    if not line then
      st:close()
      if rerr ~= "eof" then return nil, "build: " .. self:_transport_error(rerr), "transport" end
      break
    end
    local msg = line:find("%S") and json.decode(line)
    if type(msg) == "table" then
      if msg.errorDetail or msg.error then
        st:close()
        local text = (msg.errorDetail and msg.errorDetail.message) or msg.error
        return nil, tostring(text):gsub("%s+$", ""), "failed"
      end
      if type(msg.stream) == "string" then
        emit_lines(o.on_line, msg.stream)
        built = msg.stream:match("Successfully built (%x+)") or built
      end
      if type(msg.aux) == "table" and msg.aux.ID then id = msg.aux.ID end
    end
  end
  id = id or built
  if not id then return nil, "build: the engine ended the build without an image id", "failed" end
  return id
end

-- Pulls an image, always with a tag ("latest" when none): without one the Engine pulls
-- every tag (notes §4). o.on_line(text) gets the status lines -> true | nil, err, code.
function methods:pull(image, o)
  o = o or {}
  local name, tag = docker.split_image(image)
  local st, err, code = self:_stream("images/create", "POST", "/images/create", {
    query = { fromImage = name, tag = tag }, mode = "lines", timeout = false,
  })
  if not st then return nil, err, code end
  while true do
    local line, rerr = st:read()
    if not line then
      st:close()
      if rerr ~= "eof" then return nil, "pull: " .. self:_transport_error(rerr), "transport" end
      return true
    end
    local msg = line:find("%S") and json.decode(line)
    if type(msg) == "table" then
      if msg.errorDetail or msg.error then
        st:close()
        return nil, tostring((msg.errorDetail and msg.errorDetail.message) or msg.error), "failed"
      end
      if o.on_line and msg.status then
        o.on_line(msg.id and (msg.id .. ": " .. msg.status) or msg.status)
      end
    end
  end
end

function methods:image_list(filters)
  return self:_json("images/list", "GET", "/images/json", { query = { filters = filters_json(filters) } })
end

function methods:image_inspect(name)
  return self:_json("images/inspect", "GET", "/images/" .. seg(name) .. "/json")
end

-- -> true | true, "gone" | nil, err, code (409 while a container uses it, unless force).
function methods:image_remove(name, force)
  local res, err, code = self:_call("images/remove", "DELETE", "/images/" .. seg(name), {
    query = { force = force and "true" or nil },
  })
  if res then return true end
  if code == "notfound" then return true, "gone" end
  return nil, err, code
end

-- Adds the methods to mw.docker's engine class.
return function(Engine, module, helpers)
  docker, seg, filters_json = module, helpers.seg, helpers.filters_json
  for name, fn in pairs(methods) do Engine[name] = fn end
end
