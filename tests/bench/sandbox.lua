-- Microbenchmark (issue 15): the cost of one policy decision and one heartbeat check call as the
-- supervisor makes them (Sup:decide and core.budget around a check), without an engine.
--   mw script tests/bench/sandbox.lua [N]
-- Run it with an older build to compare (the numbers in docs/internals.md came that way).
local core = require "mw.core"
local stack = require "mw.stack"
local supervisor = require "mw.supervisor"

local N = tonumber((...)) or 20000
local SRC = [[
local policy = require "mw.policy"
return { name = "bench", components = {
  fn = { image = "busybox", restart = function(f)
    if f.reason == "oom" then return "recreate", 0.5 end
    return "restart", math.min(30, 0.1 * 2 ^ #f.history)
  end },
  obj = { image = "busybox", restart = policy.on_failure { limit = { restarts = 1000, within = "1m" } } },
  hb = { image = "busybox", heartbeat = { check = function(body)
    local n = body:match('"beats":%s*(%d+)')
    return n ~= nil and tonumber(n) > 0, "no beats"
  end } },
} }
]]
local s = assert(stack.load("/tmp/bench-stack.lua", { source = SRC, cwd = "/tmp" }))
local sup = supervisor.new { engine = {}, stack = s }
local BUDGET = { instructions = 1e6, seconds = 0.1 }

-- The best of 7 rounds: the machine is shared, and the best round is the one least disturbed.
local function per_call(label, fn)
  for _ = 1, N // 10 do fn() end        -- warm up
  local best = math.huge
  for _ = 1, 7 do
    local t0 = core.now()
    for _ = 1, N do fn() end
    best = math.min(best, (core.now() - t0) / N * 1e6)
  end
  print(string.format("%-40s %7.2f us", label, best))
end

for _, name in ipairs { "fn", "obj" } do
  local c = { key = name, name = name, index = 1, def = s.components[name], history = {}, restarts = 0 }
  local history = {}
  for i = 1, 5 do history[i] = { time = i, reason = "exited", uptime = 0 } end
  local record = { component = name, instance = 1, reason = "exited", exit_code = 1, oom = false,
                   uptime = 0, time = 10, restarts = 5, history = history }
  per_call("policy decision (" .. (name == "fn" and "function" or "policy.on_failure") .. ")",
    function() sup:decide(c, record) end)
end

local check = s.components.hb.heartbeat.check
local body = '{"cmdline":["/bin/app"],"beats":12345,"memstats":{"Alloc":1024}}'
per_call("heartbeat check call (70 B body)", function() core.budget(check, BUDGET, body) end)
-- the field at the end of 4 KB: the pattern scans it all (our matcher inside the budget)
local big = '{"memstats":"' .. ("x"):rep(4000) .. '","beats":12345}'
per_call("heartbeat check call (4 KB body)", function() core.budget(check, BUDGET, big) end)
