-- expect: component 'web': field 'build%.args%.TOKEN': a secret is accepted only as an env value
-- A build arg stays in the image's history, and the engine's JSON encoded the secret as {}.
-- (Any existing file serves as the Dockerfile: validation stops at the argument.)
local secret = require "mw.secret"
return {
  components = {
    web = { build = { context = ".", dockerfile = "105-secret-build-arg.lua", args = { TOKEN = secret "hunter2" } } },
  },
}
