-- User functions that try to stop or bloat the supervisor, one per component; run one at a time
-- by tests/lib/sandbox_child.lua (tests/unit/test_sandbox.lua). Each must get its fallback.
local function forever() while true do end end
local looping = { __tostring = forever, __pairs = forever, __len = forever, __concat = forever,
                  __eq = forever, __index = forever, __call = forever }
local function bad_pattern() return ("a"):rep(2000):find(("a*"):rep(12) .. "b") end

local function with_policy(p) return { image = "busybox", restart = p } end
local function with_check(check) return { image = "busybox", heartbeat = { check = check } } end
local function with_decide(d) return { image = "busybox", autoscale = { min = 1, max = 3, every = "1s", decide = d } } end

return {
  name = "attacks",
  components = {
    -- restart policies
    ["p-pattern"] = with_policy(function() bad_pattern() return "restart", 1 end),
    ["p-action"] = with_policy(function() return setmetatable({}, looping) end),
    ["p-delay"] = with_policy(function() return "restart", setmetatable({}, looping) end),
    ["p-changes"] = with_policy(function() return "recreate", 0, setmetatable({}, looping) end),
    ["p-memory"] = with_policy(function()
      local t = {}
      for i = 1, math.maxinteger do t[i] = ("x"):rep(1000) .. i end
      return "restart", t
    end),
    ["p-rep"] = with_policy(function() return "restart", #string.rep("x", 1900 * 1024 * 1024) end),
    ["p-move"] = with_policy(function() table.move({}, 1, math.maxinteger - 1, 2) return "restart", 0 end),
    ["p-record"] = with_policy(function(f)
      f.reason = setmetatable({}, looping)
      f.history = setmetatable({}, looping)
      error(setmetatable({}, looping))
    end),
    ["p-good"] = with_policy(function() return "restart", "250ms" end),
    -- heartbeat checks
    ["c-pattern"] = with_check(function() bad_pattern() return true end),
    ["c-why"] = with_check(function() return false, setmetatable({}, looping) end),
    ["c-good"] = with_check(function(body) return body == "ok" end),
    -- autoscale decisions
    ["a-pattern"] = with_decide(function() bad_pattern() return 2 end),
    ["a-result"] = with_decide(function() return setmetatable({}, looping) end),
  },
}
