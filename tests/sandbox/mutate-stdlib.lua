-- A stack file that tries to change the shared stdlib for the next load; each attempt must fail.
local policy = require "mw.policy"
local duration = require "mw.duration"
local failed = 0
for _, f in ipairs {
  function() policy.actions.restart = nil end,
  function() policy.default = nil end,
  function() duration.parse = nil end,
} do
  if not pcall(f) then failed = failed + 1 end
end
assert(failed == 3, "every change was refused")
-- rawset lands on this load's own view, never on the module (the test checks the module)
rawset(policy.actions, "restart", false)
rawset(policy, "default", false)
return { name = "mutate", components = { web = { image = "busybox", restart = policy.always {} } } }
