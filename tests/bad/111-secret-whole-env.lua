-- expect: component 'web': field 'env': a secret is accepted only as an env value
-- The whole env as one secret read as an empty env.
local secret = require "mw.secret"
return {
  components = {
    web = { image = "nginx", env = secret "A=hunter2" },
  },
}
