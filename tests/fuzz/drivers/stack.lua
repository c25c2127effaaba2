-- Fuzz driver for lua/mw/stack.lua: whatever the source text, stack.load returns a stack or
-- one line of message and never raises; a stack it accepts can be planned (mw check).
local stack = require "mw.stack"

return function(data)
  local ok, s, err = pcall(stack.load, "/nonexistent-fuzz/stack.lua",
    { source = data, cwd = "/nonexistent-fuzz", budget = { instructions = 200000, seconds = 1 } })
  if not ok then fail("stack.load raised: " .. tostring(s)) end
  if s == nil then
    if type(err) ~= "string" then fail("no message: " .. tostring(err)) end
    if err:find("[\n\r]") then fail("a message with a newline: " .. err) end
    if #err > 2000 then fail("a message of " .. #err .. " bytes") end
    return
  end
  if type(s) ~= "table" or type(s.name) ~= "string" or type(s.order) ~= "table" then fail("a strange stack") end
  local pok, plan = pcall(stack.plan, s)
  if not pok then fail("plan raised: " .. tostring(plan)) end
end
