-- Reads numbers out of a /debug/vars body for heartbeat checks. Stack files have no JSON
-- library, and a check runs on every heartbeat, so this is one string match: the first
-- "name": <number> in the text. The pipeline's programs write their totals before any nested
-- object, so the first match is the top-level field.
local vars = {}

function vars.number(body, name)
  local v = body:match('"' .. name .. '"%s*:%s*(%-?%d+%.?%d*)')
  return v and tonumber(v)
end

return vars
