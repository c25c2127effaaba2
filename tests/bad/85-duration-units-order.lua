-- expect: policy%.always: field 'limit%.within': bad duration "30s1m"
local policy = require "mw.policy"
return { components = { web = { image = "nginx", restart = policy.always { limit = { restarts = 3, within = "30s1m" } } } } }
