-- A migration job gating the app, env files beside the stack file, values from .env with
-- compose's interpolation, and a component that runs only with `--profile debug`.
local secret = require "mw.secret"
return {
  name = "jobs",
  components = {
    migrate = { image = "app:" .. mw.env("APP_TAG", "latest"), job = true, command = "migrate up",
                restart = "on-failure" },
    app = { image = mw.interpolate("app:${APP_TAG:-latest}"), depends_on = { migrate = "completed" },
            env_file = { "app.env" }, env = { MODE = "prod", TOKEN = secret "hunter2" } },
    debug = { image = "busybox", command = { "sleep", "1000" }, profiles = { "debug" },
              depends_on = { "app" } },
  },
}
