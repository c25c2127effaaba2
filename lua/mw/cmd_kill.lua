-- `mw kill`: force-removes a component's containers (all its instances, or the one named by
-- its key); a running mw sees them go and recovers the component.
local lookup = require "mw.lookup"

local M = {}

local OK, FAILURE, USAGE = 0, 1, 2

function M.main(args, cli)
  local opts, rest = cli.parse(args, { stack = "value" })
  if not opts then cli.say(rest) return USAGE end
  local target, code = lookup.stack_arg(opts, rest, cli.say, "kill")
  if not target then return code end
  local comp = rest[1]
  if not comp or #rest > 1 then cli.say("usage: mw kill <component> [stack.lua | --stack S]") return USAGE end
  local engine = lookup.connect(cli.say)
  if not engine then return FAILURE end
  local stack, list = lookup.resolve(engine, comp, target.name)
  if not stack then
    if target.def and target.def.components[comp] then
      cli.say(string.format("component %s of stack %s has no container", comp, target.def.name))
    else
      cli.say(list)
    end
    return FAILURE
  end
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
