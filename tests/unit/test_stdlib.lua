-- Unit tests for the stack author's library: mw.duration, mw.backoff, mw.policy.
local t = require "t"
local duration = require "mw.duration"
local backoff = require "mw.backoff"
local policy = require "mw.policy"

local function near(got, want, msg)
  if type(got) ~= "number" or math.abs(got - want) > 1e-9 * math.max(1, math.abs(want)) then
    error(string.format("%sgot %s, want %s", msg and (msg .. ": ") or "", tostring(got), tostring(want)), 2)
  end
end

local function seq(b, n)
  local out = {}
  for i = 1, n do out[i] = b:delay(i) end
  return out
end

local function near_seq(got, want, msg)
  t.eq(#got, #want, (msg or "sequence") .. " length")
  for i = 1, #want do near(got[i], want[i], (msg or "sequence") .. " [" .. i .. "]") end
end

local function raises(fn, pat)
  local ok, err = pcall(fn)
  t.ok(not ok, "expected an error matching " .. pat)
  t.match(tostring(err), pat)
  return err
end

-- duration -------------------------------------------------------------------------------------

t.test("duration.parse accepts strings and numbers", function()
  local cases = {
    { "250ms", 0.25 }, { "2s", 2 }, { "1m30s", 90 }, { "1h", 3600 }, { "1.5s", 1.5 },
    { "100us", 1e-4 }, { "1h2m3s", 3723 }, { ".5s", 0.5 }, { "10ns", 1e-8 }, { "0", 0 },
    { "1m0.5s", 60.5 }, { "1s500ms", 1.5 }, { 5, 5 }, { 0, 0 }, { 0.25, 0.25 },
  }
  for _, c in ipairs(cases) do near(duration.parse(c[1]), c[2], tostring(c[1])) end
end)

t.test("duration.parse rejects bad values with one clear message", function()
  local bad = { "5 sec", "", "-1s", "1x", "30s1m", "1s1s", "5", "1.2.3s", "s", "1 s", " 1s", "1s ",
                "1e3s", "inf", "nan", 0 / 0, math.huge, -math.huge, -1, "1S" }
  for _, v in ipairs(bad) do
    local s, err = duration.parse(v)
    t.eq(s, nil, "parse " .. tostring(v))
    t.match(err, "^bad duration ", tostring(v))
    t.ok(not err:find("\n"), "one line")
  end
  local _, err = duration.parse("5 sec")
  t.eq(err, 'bad duration "5 sec" (use e.g. "500ms", "2s", "1m30s")')
  _, err = duration.parse({})
  t.match(err, "must be a string or a number, got table")
  _, err = duration.parse("a\nb")
  t.ok(not err:find("\n"), "newline escaped")
  t.match(err, "a\\x0ab", "escaped")
end)

t.test("duration.format", function()
  local cases = {
    { 90, "1m30s" }, { 0.25, "250ms" }, { 1.5, "1.5s" }, { 3600, "1h" }, { 0, "0s" },
    { 1e-4, "100us" }, { 3661, "1h1m1s" }, { 0.1 + 0.2, "300ms" }, { 30, "30s" },
    { 0.0015, "1.5ms" }, { 7200.5, "2h0.5s" }, { 60, "1m" }, { 0.9999999, "1s" }, { 2e-9, "2ns" },
  }
  for _, c in ipairs(cases) do t.eq(duration.format(c[1]), c[2], tostring(c[1])) end
  -- format and parse round-trip on ordinary values
  for _, s in ipairs { "1m30s", "250ms", "1h", "1.5s", "100us" } do
    t.eq(duration.format(duration.parse(s)), s)
  end
  raises(function() duration.format("1s") end, "expected a number")
end)

-- backoff ----------------------------------------------------------------------------------------

t.test("backoff.constant", function()
  local b = backoff.constant { delay = "2s" }
  near_seq(seq(b, 5), { 2, 2, 2, 2, 2 })
  t.eq(b.kind, "constant")
  t.eq(b:params().delay, 2)
  t.eq(tostring(b), "constant(2s)")
end)

t.test("backoff.linear", function()
  local b = backoff.linear { initial = "1s", step = "500ms", max = "3s" }
  near_seq(seq(b, 7), { 1, 1.5, 2, 2.5, 3, 3, 3 })
  t.eq(tostring(b), "linear(1s +500ms, max 3s)")
  -- step defaults to initial, max to 30s
  near_seq(seq(backoff.linear { initial = 10 }, 5), { 10, 20, 30, 30, 30 })
end)

t.test("backoff.exponential", function()
  local b = backoff.exponential { initial = "100ms", max = "1s" }
  near_seq(seq(b, 6), { 0.1, 0.2, 0.4, 0.8, 1, 1 })
  t.eq(b.factor, 2)
  t.eq(b.jitter, 0)
  t.eq(tostring(b), "exponential(100ms x2, max 1s)")
  local c = backoff.exponential { initial = 1, factor = 3, max = "1m" }
  near_seq(seq(c, 5), { 1, 3, 9, 27, 60 })
  -- huge attempts stay at max instead of overflowing
  near(c:delay(100000), 60)
  t.eq(tostring(backoff.exponential { initial = "200ms", factor = 2, max = "30s", jitter = 0.1 }),
    "exponential(200ms x2, max 30s, jitter 0.1)")
end)

t.test("backoff.fibonacci", function()
  local b = backoff.fibonacci { initial = "1s", max = "1m" }
  near_seq(seq(b, 11), { 1, 2, 3, 5, 8, 13, 21, 34, 55, 60, 60 })
  t.eq(tostring(b), "fibonacci(1s, max 1m)")
  near(b:delay(5000), 60)
end)

t.test("splitmix64 matches the reference output", function()
  -- splitmix64 seeded with 0: first output 0xE220A8397B1DCDAF (the reference implementation's)
  near(backoff.uniform(0, 1), (0xE220A8397B1DCDAF >> 11) * 0x1p-53)
  local u = backoff.uniform(12345, 7)
  t.ok(u >= 0 and u < 1)
end)

t.test("exponential jitter is bounded, deterministic and seedable", function()
  local a = backoff.exponential { initial = 1, max = 100, jitter = 0.1, seed = 7 }
  local b = backoff.exponential { initial = 1, max = 100, jitter = 0.1, seed = 7 }
  local c = backoff.exponential { initial = 1, max = 100, jitter = 0.1, seed = 8 }
  local differs = false
  for i = 1, 12 do
    local base = math.min(100, 2 ^ (i - 1))
    local d = a:delay(i)
    t.ok(d >= base * 0.9 - 1e-12 and d <= math.min(100, base * 1.1) + 1e-12, "within +-10% at " .. i)
    t.eq(d, a:delay(i), "same object, same attempt")
    t.eq(d, b:delay(i), "same seed")
    if d ~= c:delay(i) then differs = true end
  end
  t.ok(differs, "another seed gives another sequence")
end)

t.test("backoff.seed sets the default seed", function()
  local prev = backoff.seed(99)
  local a = backoff.exponential { initial = 1, jitter = 0.5 }
  local b = backoff.exponential { initial = 1, jitter = 0.5, seed = 99 }
  backoff.seed(prev)
  t.eq(a.seed, 99)
  for i = 1, 5 do t.eq(a:delay(i), b:delay(i)) end
  t.eq(backoff.seed(), prev, "seed() returns the previous seed")
  t.eq(backoff.exponential { initial = 1 }.seed, backoff.seed())
  raises(function() backoff.seed("x") end, "expected an integer")
end)

t.test("backoff.decorrelated follows min(max, rand(initial, prev*3))", function()
  local b = backoff.decorrelated { initial = "100ms", max = "10s", seed = 3 }
  local prev = 0.1
  for i = 1, 40 do
    local d = b:delay(i)
    t.ok(d >= 0.1 and d <= math.min(10, prev * 3) + 1e-12, "bounds at " .. i)
    -- the exact value from the same PRNG
    near(d, math.min(10, 0.1 + (prev * 3 - 0.1) * backoff.uniform(3, i)), "value at " .. i)
    prev = d
  end
  -- pure: asking out of order gives the same answers
  local again = backoff.decorrelated { initial = "100ms", max = "10s", seed = 3 }
  t.eq(again:delay(17), b:delay(17))
  t.eq(again:delay(2), b:delay(2))
  t.eq(tostring(b), "decorrelated(100ms, max 10s)")
end)

t.test("backoff objects are read-only and validated", function()
  local b = backoff.constant { delay = 1 }
  raises(function() b.delay = 5 end, "read%-only")
  t.ok(backoff.is(b))
  t.ok(not backoff.is({ kind = "constant" }))
  t.eq(getmetatable(b), "mw.backoff")
  raises(function() b:delay(0) end, "attempt must be an integer >= 1")
  raises(function() b:delay(1.5) end, "attempt must be an integer >= 1")
  local errs = {
    { function() return backoff.exponential { initial = 1, factor = 0.5 } end,
      "^backoff%.exponential: field 'factor' must be a number >= 1$" },
    { function() return backoff.exponential { initial = 1, jitter = 2 } end,
      "field 'jitter' must be a number between 0 and 1" },
    { function() return backoff.exponential { initial = "5 sec" } end, "field 'initial': bad duration \"5 sec\"" },
    { function() return backoff.exponential {} end, "field 'initial' is required" },
    { function() return backoff.exponential { initial = 0 } end, "field 'initial' must be a duration > 0" },
    { function() return backoff.linear { initial = 1, mx = 3 } end,
      "unknown field 'mx' %(valid: initial, step, max%)" },
    { function() return backoff.linear { initial = 5, max = 1 } end, "field 'max' must be >= 'initial'" },
    { function() return backoff.constant "1s" end, "expected a table of options, got string" },
    { function() return backoff:constant { delay = 1 } end, "call it with a dot" },
    { function() return backoff.decorrelated { initial = 1, seed = 1.5 } end, "field 'seed' must be an integer" },
  }
  for _, e in ipairs(errs) do raises(e[1], e[2]) end
end)

t.test("backoff errors point at the caller's line", function()
  local ok, err = pcall(function()
    local b = backoff.exponential { initial = 1, factor = 0 }   -- this line
    return b
  end)
  t.ok(not ok)
  t.match(err, "test_stdlib%.lua:%d+: backoff%.exponential")
end)

-- policy -----------------------------------------------------------------------------------------

local function failure(over)
  local f = { component = "web", reason = "exited", exit_code = 1, oom = false, uptime = 0,
              time = 1000, restarts = 0, history = {} }
  for k, v in pairs(over or {}) do f[k] = v end
  return f
end

local function hist(...)
  local h = {}
  for i, e in ipairs { ... } do h[i] = { time = e[1], reason = "exited", uptime = e[2] } end
  return h
end

t.test("policy actions by reason", function()
  local p = policy.on_failure {}
  local cases = {
    { { reason = "exited", exit_code = 1 }, "restart" },
    { { reason = "exited", exit_code = 0 }, "ignore" },
    { { reason = "oom", exit_code = 137, oom = true }, "restart" },
    { { reason = "exited", exit_code = 0, oom = true }, "restart" },
    { { reason = "heartbeat" }, "restart" },
    { { reason = "removed" }, "recreate" },
    { { reason = "disconnected" }, "reconnect" },
  }
  for _, c in ipairs(cases) do
    local action, delay = p(failure(c[1]))
    t.eq(action, c[2], c[1].reason)
    -- the first failure is restarted at once (issue 17's first-restart rule)
    near(delay, 0, c[1].reason .. " delay")
    -- a second one within reset_after gets the backoff's first delay
    local again = failure(c[1])
    again.history = hist({ 1, 0 })
    local action2, delay2 = p(again)
    t.eq(action2, c[2], c[1].reason .. " again")
    near(delay2, c[2] == "ignore" and 0 or 0.1, c[1].reason .. " second delay")
  end
  t.eq((policy.always {}(failure { reason = "exited", exit_code = 0 })), "restart")
  local never = policy.never {}
  local a, d = never(failure {})
  t.eq(a, "give_up"); t.eq(d, 0)
  t.eq((never(failure { reason = "heartbeat" })), "give_up")
  t.eq((never(failure { reason = "removed" })), "give_up")
  t.eq((never(failure { reason = "disconnected" })), "reconnect")
end)

t.test("policy attempt counts failures since the last long run", function()
  local p = policy.on_failure { backoff = backoff.exponential { initial = 1, max = 1000 }, reset_after = "10s" }
  local _, d = p(failure { history = hist({ 1, 0 }, { 2, 0 }, { 3, 0 }) })
  near(d, 4, "fourth quick failure: the backoff's third delay")
  t.eq(policy.attempt(p, failure { history = hist({ 1, 0 }, { 2, 0 }, { 3, 0 }) }), 4)
  -- the current failure came after a long run: back to attempt 1
  _, d = p(failure { uptime = 10, history = hist({ 1, 0 }, { 2, 0 }, { 3, 0 }) })
  near(d, 0, "reset by the current uptime: restarted at once")
  -- a long run in history: that failure was attempt 1, the ones after it count on from there
  _, d = p(failure { history = hist({ 1, 0 }, { 2, 0 }, { 100, 50 }, { 101, 0 }) })
  near(d, 2, "attempt 3 after the reset: the backoff's second delay")
  _, d = p(failure { history = hist({ 1, 0 }, { 2, 0 }, { 100, 50 }) })
  near(d, 1, "attempt 2 right after the reset: the backoff's first delay")
  -- the default reset is 10s: a second failure after 9.9 s of running backs off, one after 10 s
  -- of running is a first failure again and is restarted at once
  _, d = policy.default(failure { uptime = 9.9, history = hist({ 1, 0 }) })
  near(d, 0.1)
  _, d = policy.default(failure { uptime = 10, history = hist({ 1, 0 }) })
  near(d, 0)
  -- Docker's schedule (100 ms first, then doubling) is still one line away
  local docker_like = policy.always { first_delay = "100ms", backoff = backoff.exponential { initial = "200ms" } }
  local _, d1 = docker_like(failure { uptime = 60 })
  local _, d2 = docker_like(failure { history = hist({ 1, 0 }) })
  near(d1, 0.1); near(d2, 0.2)
  t.eq(policy.delay(docker_like, 1), 0.1); t.eq(policy.delay(policy.default, 1), 0)
  raises(function() policy.always { first_delay = "soon" } end, "first_delay")
end)

t.test("policy limit and escalation", function()
  local function p(then_)
    return policy.on_failure { backoff = backoff.constant { delay = 1 },
                               limit = { restarts = 2, within = "1m" }, ["then"] = then_ }
  end
  local within = hist({ 950, 0 }, { 990, 0 })           -- two in the last minute + now = 3 > 2
  local outside = hist({ 900, 0 }, { 930, 0 }, { 990, 0 }) -- only 990 and now are inside
  local a, d = p("give_up")(failure { history = within })
  t.eq(a, "give_up"); t.eq(d, 0)
  a, d = p("dependents")(failure { history = within })
  t.eq(a, "restart_dependents"); near(d, 1)
  a = p("stack")(failure { history = within })
  t.eq(a, "restart_stack")
  a = p(nil)(failure { history = within })
  t.eq(a, "give_up", "give_up is the default")
  a = p("give_up")(failure { history = outside })
  t.eq(a, "restart", "old failures fall out of the window")
  a = p("give_up")(failure { history = within, reason = "disconnected" })
  t.eq(a, "reconnect", "a reconnect is not a restart")
  a = p("give_up")(failure { history = within, reason = "removed" })
  t.eq(a, "give_up")
  local q = policy.always { limit = { restarts = 0, within = "1s" }, on_limit = "stack" }
  t.eq((q(failure {})), "restart_stack", "on_limit is an alias of then")
  t.eq((p("give_up")(failure { history = within, reason = "exited", exit_code = 0 })), "ignore")
end)

t.test("policy options are validated", function()
  local errs = {
    { function() return policy.on_failure { backof = 1 } end, "^policy%.on_failure: unknown field 'backof' %(valid: " },
    { function() return policy.on_failure { backoff = 5 } end, "field 'backoff' must be a backoff" },
    { function() return policy.always { reset_after = "soon" } end, "field 'reset_after': bad duration \"soon\"" },
    { function() return policy.always { limit = { restarts = 1.5, within = "1m" } } end,
      "field 'limit%.restarts' must be an integer" },
    { function() return policy.always { limit = { restarts = 3 } } end, "field 'limit%.within' is required" },
    { function() return policy.always { limit = { restarts = 3, within = "1m", then_ = 1 } } end,
      "field 'limit': unknown field 'then_'" },
    { function() return policy.always { ["then"] = "stack" } end, "field 'then' needs a 'limit'" },
    { function() return policy.always { limit = { restarts = 1, within = 1 }, ["then"] = "boom" } end,
      "field 'then' must be" },
    { function() return policy.never { limit = { restarts = 1, within = 1 } } end,
      "policy%.never: unknown field 'limit'" },
    { function() return policy:always {} end, "call it with a dot" },
    { function() return policy.always(5) end, "expected a table of options, got number" },
  }
  for _, e in ipairs(errs) do raises(e[1], e[2]) end
  local p = policy.always {}
  raises(function() p.kind = "never" end, "read%-only")
  raises(function() p(nil) end, "expected a failure record")
  t.ok(policy.is(p) and not policy.is(function() end))
  t.eq(p.kind, "always")
  t.eq(p.reset_after, 10)
end)

t.test("policy.describe", function()
  t.eq(policy.describe(policy.default),
    "on_failure, first restart at once, then exponential(100ms x2, max 30s), reset after 10s")
  t.eq(policy.describe(policy.on_failure {
    backoff = backoff.exponential { initial = "200ms", max = "30s", jitter = 0.1 },
    reset_after = "30s", limit = { restarts = 5, within = "1m" } }),
    "on_failure, first restart at once, then exponential(200ms x2, max 30s, jitter 0.1), reset after 30s, " ..
    "at most 5 restarts in 1m then give up")
  t.match(policy.describe(policy.always { first_delay = "100ms" }), "^always, first restart after 100ms, then ")
  t.match(policy.describe(policy.always { limit = { restarts = 1, within = 60 }, ["then"] = "dependents" }),
    "at most 1 restart in 1m then restart its dependents$")
  t.match(policy.describe(policy.never {}), "^never ")
  t.match(policy.describe(function() end), "^custom function")
  t.eq(tostring(policy.default), policy.describe(policy.default))
end)

t.test("policy.preview shows delays and where a limit bites", function()
  local rows = policy.preview(policy.default, 5)
  t.eq(#rows, 5)
  local want = { 0, 0.1, 0.2, 0.4, 0.8 }
  for i, r in ipairs(rows) do
    t.eq(r.attempt, i); t.eq(r.action, "restart"); near(r.delay, want[i])
  end
  -- constant 1s, at most 2 restarts in 2.5s: failures at t=0, 1, 2 -> the third is over the limit
  local p = policy.on_failure { first_delay = 1, backoff = backoff.constant { delay = 1 },
                                limit = { restarts = 2, within = "2500ms" } }
  rows = policy.preview(p, 10)
  t.eq(#rows, 3, "stops after give_up")
  t.eq(rows[2].action, "restart")
  t.eq(rows[3].action, "give_up"); t.eq(rows[3].delay, 0)
  -- with a 1.5s window only two failures ever fall inside: no give up
  p = policy.on_failure { first_delay = "1s", backoff = backoff.constant { delay = 1 },
                          limit = { restarts = 2, within = "1500ms" } }
  rows = policy.preview(p, 10)
  t.eq(#rows, 10)
  t.eq(rows[10].action, "restart")
  -- escalation keeps going
  p = policy.always { limit = { restarts = 1, within = "1h" }, ["then"] = "dependents" }
  rows = policy.preview(p, 4)
  t.eq(rows[1].action, "restart"); t.eq(rows[2].action, "restart_dependents"); t.eq(#rows, 4)
  t.eq(policy.preview(policy.never {}, 5)[1].action, "give_up")
end)

t.test("policy.preview: a limit of 60 restarts bites at failure 61 (history was capped at 50)", function()
  local p = policy.on_failure { backoff = backoff.constant { delay = "1s" },
                                limit = { restarts = 60, within = "10m" }, ["then"] = "give_up" }
  local rows = policy.preview(p, 70)
  t.eq(#rows, 61, "rows until give_up")
  t.eq(rows[60].action, "restart")
  t.eq(rows[61].action, "give_up")
end)

t.test("policy.preview: a standby is promoted at the first failure, then restarts until the next is ready", function()
  local rows = policy.preview(policy.default, 4, { standby = true })
  t.eq(rows[1].action, "promote"); t.eq(rows[1].delay, 0); t.eq(rows[1].standby, true); t.eq(rows[1].does, "promote")
  t.eq(rows[2].standby, false, "the next standby is still being prepared")
  t.eq(rows[2].action, "restart"); near(rows[2].delay, 0.1)
  t.eq(rows[4].action, "restart")
  -- without the option, no promotion
  t.eq(policy.preview(policy.default, 1)[1].action, "restart")
  -- the limit is checked before the promotion: over it, no promote
  local p = policy.on_failure { limit = { restarts = 0, within = "1m" } }
  t.eq(policy.preview(p, 3, { standby = true })[1].action, "give_up")
  -- a function answering promote: mw restarts in place when no standby is frozen
  local seen = {}
  local fn = function(f) seen[#seen + 1] = f.standby return "promote", "1s" end
  rows = policy.preview(fn, 3, { standby = true })
  t.same(seen, { true, false, false })
  t.eq(rows[1].does, "promote"); t.eq(rows[2].action, "promote"); t.eq(rows[2].does, "restart")
  rows = policy.preview(fn, 2)
  t.eq(rows[1].action, "promote"); t.eq(rows[1].does, "restart", "no standby field: restart in place")
  -- a function that declines the standby keeps it for the next failure
  seen = {}
  policy.preview(function(f) seen[#seen + 1] = f.standby return "restart", 0 end, 2, { standby = true })
  t.same(seen, { true, true })
end)

t.test("policy.trim_history keeps 50, and beyond that what the limit can still count", function()
  local function h(n, now)
    local out = {}
    for i = 1, n do out[i] = { time = now - n + i, reason = "exited", uptime = 0 } end
    return out
  end
  t.eq(#policy.trim_history(h(51, 1000), 1000, nil), 50, "no limit: 50")
  t.eq(#policy.trim_history(h(51, 1000), 1000, { restarts = 5, within = 60 }), 50, "a small limit: 50")
  t.eq(#policy.trim_history(h(80, 1000), 1000, { restarts = 60, within = 600 }), 60, "the limit's restarts")
  local kept = policy.trim_history(h(80, 1000), 1000, { restarts = 60, within = 55 })
  t.eq(#kept, 55, "entries older than within never count again")
  t.eq(kept[#kept].time, 1000, "the newest stay")
  t.eq(kept[1].time, 946)
  t.eq(#policy.trim_history(h(200, 1000), 1000, { restarts = 1e9, within = 1e9 }), 200,
    "a huge limit keeps what it can count")
end)

t.test("policy.preview runs plain functions too", function()
  local seen = {}
  local rows = policy.preview(function(f)
    seen[#seen + 1] = #f.history
    if f.restarts >= 3 then return "give_up" end
    return "restart", "1s"
  end, 10)
  t.eq(#rows, 4)
  t.eq(rows[1].delay, 1, "duration strings are accepted")
  t.eq(rows[4].action, "give_up")
  t.same(seen, { 0, 1, 2, 3 })
  raises(function() policy.preview(function() return "explode", 1 end, 3) end, "unknown action \"explode\"")
  raises(function() policy.preview(function() return "restart", -1 end, 3) end, "bad delay")
  raises(function() policy.preview(policy.default, 0) end, "n must be an integer")
  raises(function() policy.preview("x") end, "expected a policy or a function")
end)

t.test("policy.check_result", function()
  t.eq(select(2, policy.check_result("restart", "250ms")), 0.25)
  t.eq(select(2, policy.check_result("give_up")), 0)
  t.eq(policy.check_result(nil), nil)
  t.match(select(2, policy.check_result(42)), "unknown action %(number%)")
  for a in pairs(policy.actions) do t.eq(policy.check_result(a, 0), a) end
end)

t.test("a frozen standby makes the policies promote, at once; limits and never still win", function()
  local a, d = policy.default(failure { reason = "exited", exit_code = 1, standby = true })
  t.eq(a, "promote") t.eq(d, 0)
  a = policy.default(failure { reason = "heartbeat", standby = true })
  t.eq(a, "promote")
  a = policy.default(failure { reason = "removed", standby = true })
  t.eq(a, "promote", "a removed container: the standby takes its place")
  a = policy.default(failure { reason = "exited", exit_code = 1 })
  t.eq(a, "restart", "no standby: restart")
  a = policy.on_failure {} (failure { reason = "exited", exit_code = 0, standby = true })
  t.eq(a, "ignore", "a clean exit under on_failure stays ignored")
  a = policy.never {} (failure { reason = "exited", exit_code = 1, standby = true })
  t.eq(a, "give_up")
  local limited = policy.on_failure { limit = { restarts = 1, within = "1m" } }
  a = limited(failure { reason = "exited", exit_code = 1, standby = true, history = hist({ 999, 1 }) })
  t.eq(a, "give_up", "over the limit: the escalation, not a promotion")
  t.ok(policy.check_result("promote", 0), "promote is an action a function may answer")
end)

os.exit(t.run())
