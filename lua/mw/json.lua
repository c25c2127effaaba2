-- JSON for mw: cjson underneath, with explicit arrays and objects where a table may be empty,
-- and decoded values made plain Lua. The engine client (mw.docker), `mw status --json` and
-- the status API all speak it.
local cjson = require "cjson"

local json = {}

-- cjson 2.1.0 (Debian) encodes every empty table as {} and has no empty-array marker, yet
-- the Engine wants Cmd/Env as arrays and Labels/ExposedPorts/filters as objects. So values
-- are encoded here, with the kind explicit where a table may be empty.

local ARRAY = { __name = "mw.json.array" }
local OBJECT = { __name = "mw.json.object" }

-- Marks t (or a new table) as a JSON array, even when empty.
function json.array(t) return setmetatable(t or {}, ARRAY) end
-- Marks t (or a new table) as a JSON object, even when empty or with keys 1..n.
function json.object(t) return setmetatable(t or {}, OBJECT) end

local function is_sequence(t)
  local n = #t
  if n == 0 then return false end
  local count = 0
  for k in pairs(t) do
    if math.type(k) ~= "integer" or k < 1 or k > n then return false end
    count = count + 1
  end
  return count == n
end

local encode

local function encode_object(t, depth)
  local keys = {}
  for k in pairs(t) do
    if type(k) ~= "string" and type(k) ~= "number" then
      error("json: object key of type " .. type(k), depth + 2)
    end
    keys[#keys + 1] = tostring(k)
  end
  table.sort(keys)   -- deterministic bodies: easier to test and to diff
  local parts = {}
  for i, k in ipairs(keys) do
    local v = t[k]
    if v == nil then v = t[tonumber(k)] end
    parts[i] = cjson.encode(k) .. ":" .. encode(v, depth + 1)
  end
  return "{" .. table.concat(parts, ",") .. "}"
end

encode = function(v, depth)
  depth = depth or 0
  if depth > 64 then error("json: nesting too deep (a cycle?)", 2) end
  local tv = type(v)
  if v == nil or v == cjson.null then return "null" end
  if tv == "boolean" then return tostring(v) end
  if tv == "string" then return cjson.encode(v) end
  if tv == "number" then
    if math.type(v) == "integer" then return string.format("%d", v) end
    if v ~= v or v == math.huge or v == -math.huge then error("json: cannot encode " .. tostring(v), 2) end
    if v == math.floor(v) and math.abs(v) < 2 ^ 53 then return string.format("%d", math.tointeger(v)) end
    return string.format("%.17g", v)
  end
  if tv ~= "table" then error("json: cannot encode a " .. tv, 2) end
  local mt = getmetatable(v)
  if mt == ARRAY or (mt ~= OBJECT and is_sequence(v)) then
    local parts = {}
    for i = 1, #v do parts[i] = encode(v[i], depth + 1) end
    return "[" .. table.concat(parts, ",") .. "]"
  end
  return encode_object(v, depth)
end

-- Encodes a Lua value as JSON: empty unmarked tables become {}, sequences arrays.
function json.encode(v) return encode(v, 0) end

-- cjson decodes JSON null as a sentinel and every number as a float (1.0): make the result
-- plain Lua (null fields absent, integral numbers integers) so callers need not know cjson.
local function normalize(v, depth)
  if type(v) ~= "table" or depth > 64 then return v end
  for k, x in pairs(v) do
    if x == cjson.null then
      v[k] = nil
    elseif math.type(x) == "float" and x == math.floor(x) and math.abs(x) < 2 ^ 63 then
      v[k] = math.tointeger(x)
    elseif type(x) == "table" then
      normalize(x, depth + 1)
    end
  end
  return v
end

-- Decodes JSON text -> value | nil, err.
function json.decode(s)
  if s == nil or s == "" then return nil, "empty body" end
  local ok, v = pcall(cjson.decode, s)
  if not ok then return nil, "bad JSON: " .. tostring(v) end
  return normalize(v, 0)
end

json.is_sequence = is_sequence

return json
