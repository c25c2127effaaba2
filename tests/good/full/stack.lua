-- Every component field, every policy and every backoff shape, plus a helper beside the file.
local policy  = require "mw.policy"
local backoff = require "mw.backoff"
local helpers = require "helpers"
local again   = require "helpers"   -- loaded once: the same table comes back

assert(helpers == again)

return {
  name = "full",
  components = {
    source = helpers.service("source:latest", { heartbeat = false }),

    ingestion = {
      build = { context = "app", dockerfile = "Dockerfile", args = { VERSION = 2, DEBUG = false }, target = "final" },
      command = { "/bin/ingest" },
      env = { INGESTION_PORT = 8080, METRICS_HOST = "source" },
      depends_on = { "source" },
      heartbeat = { port = 8089, path = "/debug/vars", interval = "500ms", timeout = "1s", misses = 3, grace = "10s",
                    check = function(body) return body ~= "", "empty body" end },
      restart = policy.on_failure {
        backoff = backoff.exponential { initial = "200ms", factor = 2, max = "30s", jitter = 0.1 },
        reset_after = "30s", limit = { restarts = 5, within = "1m" }, ["then"] = "give_up",
      },
    },

    db = {
      image = "postgres:16",
      heartbeat = { exec = { "pg_isready", "-q" }, interval = "2s", misses = 5, grace = "1m" },
      volumes = { "pgdata:/var/lib/postgresql/data", { tmpfs = "/run/postgresql", size = "16m" } },
      secrets = { db_password = "./db_password.txt" },
      ports = { "127.0.0.1:5432:5432" },
      restart = policy.always {
        backoff = backoff.fibonacci { initial = "1s", max = "1m" },
        limit = { restarts = 3, within = "5m" }, on_limit = "dependents",
      },
      memory = "512m", shm_size = "128m", cpus = 1.5,
      ulimits = { nofile = { soft = 1024, hard = 4096 }, nproc = 512 },
      stop_signal = "INT", stop_grace = "30s",
    },

    cache = {
      image = "redis:7",
      heartbeat = { tcp = 6379 },
      restart = policy.on_failure { backoff = backoff.decorrelated { initial = "100ms", max = "10s", seed = 42 },
                                    limit = { restarts = 10, within = "10m" }, ["then"] = "stack" },
      volumes = { { source = "cachedata", target = "/data", read_only = false } },
    },

    proxy = {
      build = { context = "./app", dockerfile = "Dockerfile.dev" },
      entrypoint = "/bin/proxy --config /etc/proxy.conf",
      depends_on = { ingestion = "healthy", cache = "healthy" },
      ports = { 8080, "8443:443", "53:53/udp", { host = 9000, container = 9000, ip = "0.0.0.0", proto = "tcp" } },
      volumes = { "./conf/app.conf:/etc/proxy.conf:ro", "./conf:/etc/conf.d" },
      restart = policy.never {},
      working_dir = "/srv", user = "1000:1000",
      labels = { ["com.example.team"] = "infra", tier = 1 },
      hostname = "proxy.local",
      extra_hosts = { gateway = "host-gateway", ["legacy.internal"] = "10.1.2.3" },
      init = true, read_only = true,
      cap_add = { "NET_BIND_SERVICE" }, cap_drop = { "cap_all" },
      networks = { "frontend", "monitoring" },
    },

    worker = helpers.service("worker:1", {
      depends_on = { cache = "started" },
      scale = 3,
      restart = function(failure)
        if failure.reason == "oom" then return "recreate", 5 end
        return "restart", helpers.quick:delay(#failure.history + 1)
      end,
      heartbeat = true,
      autoscale = { min = 1, max = 5, every = "10s", decide = function(s) return s.desired end },
    }),

    steady = { image = "steady", restart = policy.always { backoff = backoff.constant { delay = "2s" } } },
  },
}
