-- Values as mw.yaml decodes a compose file: their kinds, keys in a stable order, scalars as
-- the text a container sees, and one-line flow-style text for comments and messages.
local yaml = require "mw.yaml"

local yamlvalue = {}

local NULL = yaml.null

local function is_table(v) return type(v) == "table" end
-- Mapping keys are always strings, so a table with list items is a sequence.
local function is_list(v) return type(v) == "table" and (rawlen(v) > 0 or next(v) == nil) end
local function is_map(v) return type(v) == "table" and rawlen(v) == 0 end

local function sorted_keys(t)
  local ks = {}
  for k in pairs(t) do ks[#ks + 1] = k end
  table.sort(ks, function(a, b)
    if type(a) == type(b) then return a < b end
    return type(a) == "number"
  end)
  return ks
end

local function num_text(v)
  if math.type(v) == "integer" then return string.format("%d", v) end
  if v == math.floor(v) and math.abs(v) < 2 ^ 53 then return string.format("%d", math.tointeger(v)) end
  return string.format("%.14g", v)
end

-- Scalars as the text a container sees (nil for null).
local function str_of(v)
  if type(v) == "string" then return v end
  if type(v) == "number" then return num_text(v) end
  if type(v) == "boolean" then return tostring(v) end
  return nil
end

-- Compose reads yes/no/on/off as booleans where a boolean is expected; the decoder keeps them
-- as text, so the field decides here.
local BOOLS = { ["true"] = true, yes = true, on = true, y = true,
                ["false"] = false, no = false, off = false, n = false }
local function bool_of(v)
  if type(v) == "boolean" then return v end
  if type(v) == "string" then return BOOLS[v:lower()] end
  return nil
end

-- A compose value in one line, for a comment: flow-style YAML.
local function compact(v)
  if v == NULL then return "null" end
  if type(v) == "string" then
    if v ~= "" and v:find("^[%w_./@+-][%w_./:@+=, -]*$") and not v:find("[ :]$") then return v end
    return (string.format("%q", v):gsub("\\\n", "\\n"):gsub("\r", "\\r"))
  end
  if type(v) == "number" then return num_text(v) end
  if type(v) ~= "table" then return tostring(v) end
  local items = {}
  if is_list(v) and next(v) ~= nil then
    for _, x in ipairs(v) do items[#items + 1] = compact(x) end
    return "[" .. table.concat(items, ", ") .. "]"
  end
  for _, k in ipairs(sorted_keys(v)) do items[#items + 1] = compact(k) .. ": " .. compact(v[k]) end
  return "{" .. table.concat(items, ", ") .. "}"
end

yamlvalue.is_table, yamlvalue.is_list, yamlvalue.is_map = is_table, is_list, is_map
yamlvalue.sorted_keys, yamlvalue.num_text, yamlvalue.str_of = sorted_keys, num_text, str_of
yamlvalue.bool_of, yamlvalue.compact = bool_of, compact

return yamlvalue
