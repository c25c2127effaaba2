-- Start order: dependencies first, ties broken by name; conditions and short policy names.
return {
  name = "deps",
  components = {
    web    = { image = "web", depends_on = { "api", cache = "started" }, restart = "always" },
    api    = { image = "api", depends_on = { db = "healthy", queue = "healthy" }, heartbeat = true },
    db     = { image = "postgres:16", heartbeat = { tcp = 5432 } },
    queue  = { image = "queue", heartbeat = { exec = "queue-ctl ping --quiet" } },
    cache  = { image = "redis:7", restart = "no" },
    batch  = { image = "batch", depends_on = "db", restart = "on-failure" },
  },
}
