-- `mw kill`: force-removes a component's containers (all its instances, or the one named by
-- its key); a running mw sees them go and recovers the component.
local lookup = require "mw.lookup"

local M = {}

local OK, FAILURE, USAGE = 0, 1, 2

function M.main(args, cli)
  local opts, rest = cli.parse(args, { stack = "value" })
  if not opts then cli.say(rest) return USAGE end
  local found, code = lookup.component_args(opts, rest, cli, "kill",
    "usage: mw kill <component> [stack.lua | --stack S]")
  if not found then return code end
  local engine, list = found.engine, found.list
  local rc = OK
  for _, ctr in ipairs(list) do
    local ok, err = engine:remove(ctr.Id, { force = true })
    if not ok then
      cli.say(string.format("cannot remove %s: %s", ctr.Id:sub(1, 12), tostring(err)))
      rc = FAILURE
    end
  end
  return rc
end

return M
