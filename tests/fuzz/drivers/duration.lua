-- Fuzz driver for stdlib/mw/duration.lua: parse never raises, gives a finite non-negative
-- number or one short line; format of a parsed value never raises and parses back to it.
local duration = require "mw.duration"

local function check_message(err)
  if type(err) ~= "string" then fail("no message: " .. tostring(err)) end
  if err:find("[\n\r]") then fail("a message with a newline: " .. err) end
  if #err > 400 then fail("a message of " .. #err .. " bytes") end
end

local function roundtrip(v)
  local ok, s = pcall(duration.format, v)
  if not ok then fail("format(" .. string.format("%.17g", v) .. ") raised: " .. tostring(s)) end
  local back, err = duration.parse(s)
  if back == nil then fail("format(" .. string.format("%.17g", v) .. ") = " .. s .. " does not parse: " .. tostring(err)) end
  local tol = 1e-3 + 1e-9 * v
  if math.abs(back - v) > tol then
    fail(string.format("format(%.17g) = %s parses back to %.17g", v, s, back))
  end
end

return function(data)
  local ok, v, err = pcall(duration.parse, data)
  if not ok then fail("parse raised: " .. tostring(v)) end
  if v == nil then
    check_message(err)
  else
    if math.type(v) == nil or v ~= v or v < 0 or v == math.huge then fail("parse gave " .. tostring(v)) end
    roundtrip(v)
  end
  local n = tonumber(data)
  if n then
    local ok2, v2, err2 = pcall(duration.parse, n)
    if not ok2 then fail("parse(number) raised: " .. tostring(v2)) end
    if v2 == nil then check_message(err2) else roundtrip(v2) end
  end
  local ok3, shown = pcall(duration.show, data)
  if not ok3 or type(shown) ~= "string" or shown:find("[%c]") then fail("show gave " .. tostring(shown)) end
end
