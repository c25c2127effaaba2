-- expect: policy%.on_failure: field 'then' must be "give_up", "dependents" or "stack"
local policy = require "mw.policy"
local p = policy.on_failure { limit = { restarts = 3, within = "1m" }, ["then"] = "explode" }
return {}
