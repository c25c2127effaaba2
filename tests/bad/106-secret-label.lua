-- expect: component 'web': field 'labels%.token': a secret is accepted only as an env value
-- A label was written as the literal "<secret>", and labels are shown by every inspect.
local secret = require "mw.secret"
return {
  components = {
    web = { image = "nginx", labels = { token = secret "hunter2" } },
  },
}
