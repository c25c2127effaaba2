-- expect: component 'web': field 'heartbeat': a secret is accepted only as an env value
-- A secret is an empty table to next(): as a heartbeat it read as the default one.
local secret = require "mw.secret"
return {
  components = {
    web = { image = "nginx", heartbeat = secret "hunter2" },
  },
}
