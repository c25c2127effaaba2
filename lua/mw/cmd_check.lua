-- `mw check` and `mw policy preview`: what a stack file means, without an engine: the plan,
-- and the restart schedule a component's policy gives.
local core = require "mw.core"
local lookup = require "mw.lookup"

local M = {}

local OK, FAILURE, USAGE = 0, 1, 2
local PREVIEW_USAGE = "usage: mw policy preview [stack.lua] <component> [N]"

function M.main(args, cli)
  local profiles, perr = lookup.take_profiles(args)
  if not profiles then cli.say(perr) return USAGE end
  local opts, rest = cli.parse(args, { quiet = true, q = "quiet" })
  if not opts then cli.say(rest) return USAGE end
  local file = lookup.first_file(rest)
  if #rest > 0 then cli.say("check: unexpected argument " .. rest[1]) return USAGE end
  local def = lookup.load_file(file, profiles)
  if not def then return USAGE end
  if not opts.quiet then io.stdout:write(require("mw.stack").plan(def), "\n") end
  return OK
end

-- mw policy preview [stack.lua] <component> [N]
function M.policy(args, cli)
  local sub = table.remove(args, 1)
  if sub ~= "preview" then cli.say(PREVIEW_USAGE) return USAGE end
  local opts, rest = cli.parse(args, {})
  if not opts then cli.say(rest) return USAGE end
  local file = lookup.first_file(rest)
  local name, n = rest[1], tonumber(rest[2] or "10")
  if not name or not n or n < 1 or n > 1000 then cli.say(PREVIEW_USAGE) return USAGE end
  local def = lookup.load_file(file)
  if not def then return USAGE end
  local comp = def.components[name]
  if not comp then cli.say("no component " .. name .. " in " .. file) return FAILURE end
  local policy = require "mw.policy"
  local log = require "mw.log"
  local standby = comp.standby and true or false
  local ok, rows = core.budget(policy.preview, { instructions = 1e8, seconds = 2 }, comp.restart, math.floor(n),
    { standby = standby })
  if not ok then cli.say("policy preview of " .. name .. " failed: " .. tostring(rows)) return FAILURE end
  print(string.format("%s: %s", name, policy.describe(comp.restart)))
  if standby then
    print("warm standby: a frozen one is ready at the first failure; the next is prepared after a promotion "
      .. "(a second or more), so the failures below, each right after a start, find none")
  end
  print(string.format("%-8s %-10s %-20s %s", "attempt", "delay", "action", "at"))
  local at = 0
  for _, row in ipairs(rows) do
    at = at + (row.delay or 0)
    local stop = row.action == "give_up" or row.action == "ignore"
    local delay = (row.delay or 0) == 0 and not stop and "at once" or log.dur(row.delay or 0)
    local line = string.format("%-8d %-10s %-20s +%s", row.attempt, delay, row.action, log.dur(at))
    -- what a promote does depends on a frozen standby being there (Sup:recover)
    if row.action == "promote" then
      if row.does == "promote" then
        line = string.format("%-56s %s", line, "the frozen standby takes its place")
      elseif standby then
        line = string.format("%-56s %s", line, "no standby ready yet: restarts in place")
      else
        line = string.format("%-56s %s", line, "no standby (the component has none): restarts in place")
      end
    end
    print(line)
  end
  -- attempt 1 is any failure after a run of reset_after or more (issue 17's first-restart rule)
  if policy.is(comp.restart) and rows[1] then
    print(string.format("attempt 1 is also every failure after %s or more of running: the backoff starts from the "
      .. "second", require("mw.duration").format(comp.restart.reset_after)))
    if standby then print("a failure once the next standby is frozen is promoted again, at once") end
  end
  return OK
end

return M
