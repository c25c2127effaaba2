-- expect: 56%-bad%-backoff%-factor%.lua:5: backoff%.exponential: field 'factor' must be a number >= 1
local policy = require "mw.policy"
local backoff = require "mw.backoff"
local p = policy.on_failure {
  backoff = backoff.exponential { initial = "200ms", factor = 0.5 },
}
return {}
