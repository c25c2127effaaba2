-- expect: 84%-policy%-unknown%-field%.lua:3: policy%.on_failure: unknown field 'backof'
local policy = require "mw.policy"
local p = policy.on_failure { backof = 1 }
return {}
