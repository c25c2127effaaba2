-- expect: component 'web': field 'hostname': a secret is accepted only as an env value
local secret = require "mw.secret"
return {
  components = {
    web = { image = "nginx", hostname = secret "hunter2" },
  },
}
