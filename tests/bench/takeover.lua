-- Benchmark: takeover across hosts on etcd (`mw run --coord`). Two contenders with state
-- dirs of their own on one etcd member (127.0.0.1, ports of its own); SIGKILL of the active
-- one until the waiting one logs its "start" (it leads and supervises), and until it has
-- adopted the component; then a fresh contender joins the line for the next trial. The
-- figure to hold against is the lease TTL: a successor may only act once the dead one's lease
-- has expired, which etcd notices within its 500 ms expiry sweep.
local core = require "mw.core"
local B = require "benchlib"
local X = require "etcdh"
local E = B.E

local TRIALS = B.knob("BENCH_TAKEOVER_TRIALS", 20)
local TTL = B.knob("BENCH_TAKEOVER_TTL", 5)

local function started_at(name)
  local list = assert(E.engine():list { label = { "used-by=millwright", "mw.stack=" .. name } })
  local out = {}
  for _, x in ipairs(list) do
    local info = E.engine():inspect(x.Id)
    if info then out[x.Id] = info.State.StartedAt end
  end
  return out
end

os.exit(B.main(function()
  if not X.available() then print("bench takeover: etcd is not installed (make deps); skipped") return end
  local cl = X.start(1)
  local ok, err = pcall(function()
    local file, name = E.stack("takeover", B.stack_source(1, { heartbeat = '{ port = 8089, path = "/debug/vars", interval = "1s" }' }))
    local function contender()
      return B.mw({ "run", "--log-format", "json", "--state-dir", E.tmpdir(), "--coord", cl.url,
                    "--coord-ttl", tostring(TTL), file })
    end
    local active = contender()
    active.wait_event({ event = "healthy", component = B.cname(1) }, 60)
    local before = started_at(name)
    local waiting = contender()
    waiting.wait_event({ event = "waiting" }, 30)
    local lead, adopt = {}, {}
    for trial = 1, TRIALS do
      local t0 = core.time()
      active.stop("KILL")
      local ev = waiting.wait_event({ event = "start" }, TTL + 30)
      local ad = waiting.wait_event({ event = "adopted", component = B.cname(1) }, 30)
      lead[#lead + 1] = ev.time - t0
      adopt[#adopt + 1] = ad.time - t0
      print(string.format("  trial %d: active %.3f s after the kill, adopted at %.3f s (TTL %d s)", trial,
        lead[#lead], adopt[#adopt], TTL))
      active, waiting = waiting, contender()
      waiting.wait_event({ event = "waiting" }, 30)
    end
    local after = started_at(name)
    local restarted = 0
    for id, s in pairs(before) do if after[id] ~= s then restarted = restarted + 1 end end
    active.stop()
    waiting.stop()
    B.remove_stack(name)
    local p50, p95 = B.pct(lead, 50), B.pct(lead, 95)
    B.report("Takeover after SIGKILL of the active mw, etcd coordination", {
      "", "kill → successor active", "kill → adopted", "lease TTL", "≤ TTL + 1 s",
    }, {
      { "p50", B.s(p50), B.s(B.pct(adopt, 50)), TTL .. " s", B.met(p50 <= TTL + 1) },
      { "p95", B.s(p95), B.s(B.pct(adopt, 95)), TTL .. " s", B.met(p95 <= TTL + 1) },
      { "max", B.s(B.max(lead)), B.s(B.max(adopt)), TTL .. " s", B.met(B.max(lead) <= TTL + 1) },
      { "restarts", tostring(restarted), "", "", B.met(restarted == 0) },
    }, {
      string.format("%d trials, one etcd member on loopback, contenders with separate state dirs; "
        .. "the takeover depends on where in its renewal cycle (TTL/4) the dead one was killed", TRIALS),
    })
  end)
  cl:stop()
  if not ok then error(err, 0) end
end))
