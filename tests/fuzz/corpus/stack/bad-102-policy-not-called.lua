-- expect: field 'restart': a policy constructor must be called
local policy = require "mw.policy"
return {
  components = {
    web = { image = "nginx", restart = policy.on_failure },
  },
}
