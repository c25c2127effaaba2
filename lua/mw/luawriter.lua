-- Writes Lua values as readable source for a stack file: keys bare where Lua allows, strings
-- quoted with UTF-8 kept, tables on one line when they fit and one item a line when not.
local text = require "mw.text"
local yamlvalue = require "mw.yamlvalue"

local luawriter = {}

local sorted_keys, num_text = yamlvalue.sorted_keys, yamlvalue.num_text

local RAW, ORDERED = {}, {}
local function raw(code) return setmetatable({ code = code }, RAW) end
local function ordered(pairs_list) return setmetatable(pairs_list, ORDERED) end

local KEYWORDS = {}
for w in ([[and break do else elseif end false for function goto if in local nil not or repeat
  return then true until while]]):gmatch("%S+") do KEYWORDS[w] = true end

-- A Lua string literal that keeps valid UTF-8 readable and escapes everything else.
local quote = text.lua_quote

local function lua_key(k)
  if type(k) == "string" and k:find("^[%a_][%w_]*$") and not KEYWORDS[k] then return k end
  if type(k) == "number" then return "[" .. num_text(k) .. "]" end
  return "[" .. quote(k) .. "]"
end

local WIDTH = 100

local function render(v, indent)
  local mt = getmetatable(v)
  if mt == RAW then return v.code end
  local tv = type(v)
  if tv == "string" then return quote(v) end
  if tv == "number" then
    if v ~= v then return "0/0" end
    if v == math.huge then return "math.huge" end
    if v == -math.huge then return "-math.huge" end
    if math.type(v) == "float" and v == math.floor(v) and math.abs(v) < 2 ^ 53 then
      return string.format("%.1f", v)
    end
    return num_text(v)
  end
  if tv == "boolean" then return tostring(v) end
  assert(tv == "table", "import: cannot write a " .. tv)
  local items = {}
  if mt == ORDERED then
    for _, kv in ipairs(v) do items[#items + 1] = lua_key(kv[1]) .. " = " .. render(kv[2], indent + 2) end
  elseif rawlen(v) > 0 then
    for _, x in ipairs(v) do items[#items + 1] = render(x, indent + 2) end
  else
    for _, k in ipairs(sorted_keys(v)) do items[#items + 1] = lua_key(k) .. " = " .. render(v[k], indent + 2) end
  end
  if #items == 0 then return "{}" end
  local one = "{ " .. table.concat(items, ", ") .. " }"
  if indent + #one <= WIDTH - 20 and not one:find("\n") then return one end
  local pad = string.rep(" ", indent + 2)
  return "{\n" .. pad .. table.concat(items, ",\n" .. pad) .. ",\n" .. string.rep(" ", indent) .. "}"
end

-- luawriter.raw(code): written as the code itself; luawriter.ordered{ {k, v}, ... }: a table
-- written with its keys in that order.
luawriter.raw, luawriter.ordered = raw, ordered
luawriter.quote, luawriter.key, luawriter.render = quote, lua_key, render

return luawriter
