-- expect: component 'web': field 'extra_hosts%.db': a secret is accepted only as an env value
local secret = require "mw.secret"
return {
  components = {
    web = { image = "nginx", extra_hosts = { db = secret "10.0.0.1" } },
  },
}
