-- A metrics pipeline in six containers, each a small static C program (src/, built by
-- `make -C examples`) in a FROM scratch image:
--
--   demoware --HTTP GET /metrics--> ingestion --TCP lines--> dispatcher --TCP lines--+--> cpuusage
--   (makes up metrics)              (polls, buffers)         (routes by kind)        +--> load
--                                                                                    +--> kernelupgrade
--
-- Components reach each other by component name: on the stack's network mw gives every
-- container its component's name as a DNS alias. Every program serves expvar-style JSON on
-- /debug/vars (its command line, memory figures, counters, buffer sizes); mw's heartbeat reads
-- it, and so can you: `mw inspect dispatcher --stack pipeline`.
--
--   make -C examples && ./mw run examples/pipeline/stack.lua
--
-- Things to try while it runs: `mw kill dispatcher` and watch it come back (and ingestion
-- reconnect); watch cpuusage crash on purpose every ~minute (CRASH_AFTER_N below); edit a
-- policy or a tuning value here and save: mw reloads the file and applies it.
local policy  = require "mw.policy"
local backoff = require "mw.backoff"
local vars    = require "vars"     -- ./vars.lua: reads a number out of a /debug/vars body

-- Where each program listens for metrics (both sides of every link use these).
local PORT = { demoware = 8080, dispatcher = 7000, cpuusage = 7001, load = 7002, kernelupgrade = 7003 }

-- cpuusage exits with status 3 after this many metrics (about a minute of them) to show a
-- crash and its recovery; 0 turns it off.
local CPUUSAGE_CRASH_AFTER = 500

-- One heartbeat shape for everyone: GET :8089/debug/vars every second; no answer within 1s
-- counts as a miss, 3 misses in a row is a failure, and a fresh container has 10s to answer
-- before that counts. `extra` adds fields, such as a check.
local function heartbeat(extra)
  local hb = { port = 8089, path = "/debug/vars", interval = "1s", timeout = "1s", misses = 3, grace = "10s" }
  for k, v in pairs(extra or {}) do hb[k] = v end
  return hb
end

-- The handlers' usual policy: restart after a failure, waiting 1s, 2s, 3s ... at most 10s.
local handler_policy = policy.on_failure {
  backoff = backoff.linear { initial = "1s", step = "1s", max = "10s" },
}

return {
  name = "pipeline",
  components = {
    -- The source: fake metrics for HOSTS hosts every SAMPLE_INTERVAL_MS, kept in a ring of
    -- DEMOWARE_BUFFER_SIZE until fetched. It keeps no state worth saving, so it is simply
    -- restarted whenever it stops, a second later.
    demoware = {
      build = "demoware",
      env = { LISTEN_PORT = PORT.demoware, HOSTS = 8, SAMPLE_INTERVAL_MS = 1000,
              DEMOWARE_BUFFER_SIZE = 10000, SPIKE_RATE = 0.03 },
      heartbeat = heartbeat(),
      restart = policy.always { backoff = backoff.constant { delay = "1s" } },
    },

    -- Polls the source every POLL_DELAY_MS for at most MAX_METRICS metrics, keeps up to
    -- INGESTION_BUFFER_SIZE of them, and pushes them to the dispatcher.
    ingestion = {
      build = "ingestion",
      env = {
        SOURCE_HOST = "demoware", SOURCE_PORT = PORT.demoware,
        DISPATCHER_HOST = "dispatcher", DISPATCHER_PORT = PORT.dispatcher,
        POLL_DELAY_MS = 500, MAX_METRICS = 100, INGESTION_BUFFER_SIZE = 1000, RETRY_DELAY_MS = 1000,
      },
      -- Start only once both ends answer their heartbeats ("started" would not wait for that).
      depends_on = { demoware = "healthy", dispatcher = "healthy" },
      -- Answering HTTP is not enough to be healthy: a full buffer means ingestion has stopped
      -- taking metrics in. A check gets the response body and returns ok[, why]; it runs on
      -- every heartbeat with a small time budget, so it only does a couple of string matches.
      heartbeat = heartbeat {
        check = function(body)
          local len, cap = vars.number(body, "buffer_len"), vars.number(body, "buffer_cap")
          if not len or not cap then return false, "no buffer_len/buffer_cap in /debug/vars" end
          if len >= cap then
            return false, string.format("buffer full (%d of %d metrics): the dispatcher is not taking them", len, cap)
          end
          return true
        end,
      },
      -- Back off exponentially (500ms, 1s, 2s ... at most 30s, each +-20% so restarts of many
      -- components do not line up); a run of a minute resets the count. More than 5 restarts
      -- within 5 minutes means something is wrong that restarting will not fix: give up and say so.
      restart = policy.on_failure {
        backoff = backoff.exponential { initial = "500ms", factor = 2, max = "30s", jitter = 0.2 },
        reset_after = "1m",
        limit = { restarts = 5, within = "5m" }, ["then"] = "give_up",
      },
    },

    -- Routes each metric by kind to a handler, queueing up to DISPATCH_QUEUE_SIZE per handler
    -- while one is down.
    dispatcher = {
      build = "dispatcher",
      env = {
        LISTEN_PORT = PORT.dispatcher, DISPATCH_QUEUE_SIZE = 1000, RETRY_DELAY_MS = 1000,
        CPUUSAGE_HOST = "cpuusage", CPUUSAGE_PORT = PORT.cpuusage,
        LOAD_HOST = "load", LOAD_PORT = PORT.load,
        KERNELUPGRADE_HOST = "kernelupgrade", KERNELUPGRADE_PORT = PORT.kernelupgrade,
      },
      depends_on = { cpuusage = "healthy", load = "healthy", kernelupgrade = "healthy" },
      -- Unhealthy when "forwarded" stops growing while metrics wait: the dispatcher measures
      -- that itself (stalled_ms), so the check stays a pure function of one response.
      heartbeat = heartbeat {
        check = function(body)
          local stalled = vars.number(body, "stalled_ms")
          if not stalled then return false, "no stalled_ms in /debug/vars" end
          if stalled > 10000 then
            return false, string.format("nothing forwarded for %.0fs while metrics wait", stalled / 1000)
          end
          return true
        end,
      },
      -- Always restart, waiting 1s, 2s, 3s, 5s, 8s ... (Fibonacci) up to 20s. Three restarts
      -- within 2 minutes escalate: the dispatcher is restarted together with what depends on
      -- it (ingestion), in dependency order, so every connection starts afresh.
      restart = policy.always {
        backoff = backoff.fibonacci { initial = "1s", max = "20s" },
        limit = { restarts = 3, within = "2m" }, ["then"] = "dependents",
      },
    },

    -- The handlers count what they get and raise alerts (printed to their logs, counted in
    -- /debug/vars): cpu above CPU_THRESHOLD %, load above cores x LOAD_FACTOR, a kernel older
    -- than MIN_KERNEL.
    cpuusage = {
      build = "cpuusage",
      env = { LISTEN_PORT = PORT.cpuusage, CPU_THRESHOLD = 90, CRASH_AFTER_N = CPUUSAGE_CRASH_AFTER },
      heartbeat = heartbeat(),
      -- A policy can be any function from a failure record to an action and a delay in
      -- seconds. The planned crash (exit status 3) comes straight back; anything else gets
      -- the usual policy.
      restart = function(failure)
        if failure.reason == "exited" and failure.exit_code == 3 then return "restart", 0.5 end
        return handler_policy(failure)
      end,
    },

    load = {
      build = "load",
      env = { LISTEN_PORT = PORT.load, LOAD_FACTOR = 1.0 },
      heartbeat = heartbeat(),
      restart = handler_policy,
    },

    kernelupgrade = {
      build = "kernelupgrade",
      env = { LISTEN_PORT = PORT.kernelupgrade, MIN_KERNEL = "5.10" },
      heartbeat = heartbeat(),
      -- Randomised waits (AWS's "decorrelated jitter", 500ms up to 15s); after 5 restarts in
      -- 10 minutes, give up on it: the rest of the pipeline runs on without kernel alerts.
      restart = policy.on_failure {
        backoff = backoff.decorrelated { initial = "500ms", max = "15s" },
        limit = { restarts = 5, within = "10m" }, ["then"] = "give_up",
      },
    },
  },
}
