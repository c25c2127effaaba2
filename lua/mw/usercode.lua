-- How the supervisor words what user code (a restart policy, a heartbeat check, an autoscale
-- decide) returned or raised, and the budget it runs under.
local M = {}

M.BUDGET = { instructions = 1e6, seconds = 0.1 }

-- What user code returned, for a message: never tostring, pairs or # on it, since a metamethod
-- would run outside any budget.
function M.shown(v)
  local t = type(v)
  if t == "string" then
    return (string.format("%q", #v > 40 and v:sub(1, 40) .. "..." or v):gsub("\\\n", "\\n"))
  elseif t == "number" or t == "boolean" or t == "nil" then
    return tostring(v)
  end
  return "(" .. t .. ")"
end

-- The error core.budget reported for user code, cut to one reasonable line.
function M.failure_text(e)
  if type(e) ~= "string" then return M.shown(e) end
  e = e:match("^[^\n]*")
  return #e > 200 and e:sub(1, 200) .. "..." or e
end

return M
