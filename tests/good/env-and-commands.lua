-- Env values of every accepted type, the compose list form, and command/entrypoint strings.
local base = { LOG_LEVEL = "debug" }
local env = {}
for k, v in pairs(base) do env[k] = v end
env.PORT, env.RATIO, env.VERBOSE, env.EMPTY = 8080, 0.25, true, ""
return {
  name = "env-and-commands",
  components = {
    app = {
      image = "localhost:5000/team/app:dev",
      env = env,
      command = [[serve --name "my app" --flag='a b' plain\ word]],
      entrypoint = { "/bin/tini", "--" },
    },
    worker = {
      image = "worker@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
      env = { "MODE=batch", "URL=http://x/?a=b" },
      command = { "work", 3, "--fast" },
    },
  },
}
