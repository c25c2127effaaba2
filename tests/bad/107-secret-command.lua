-- expect: component 'web': field 'command%[2%]': a secret is accepted only as an env value
local secret = require "mw.secret"
return {
  components = {
    web = { image = "nginx", command = { "serve", secret "hunter2" } },
  },
}
