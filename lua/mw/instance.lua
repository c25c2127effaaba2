-- An instance of a component, as the supervisor keeps it: its states and the helpers every
-- supervisor file shares to read and change them.
local core = require "mw.core"

local M = {}

-- The instances of a group in index order.
function M.instances(g)
  local out = {}
  for i in pairs(g.instances) do out[#out + 1] = i end
  table.sort(out)
  for k, i in ipairs(out) do out[k] = g.instances[i] end
  return out
end

function M.set_state(self, c, state)
  if c.state == state then return end
  c.state = state
  c.state_since = core.time()
  self:changed(c)
end

function M.is_up(c)
  return c.state == "running" or c.state == "healthy" or c.state == "starting" or c.state == "unhealthy"
end

return M
