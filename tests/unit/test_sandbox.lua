-- User Lua cannot stop or bloat mw: the attacks of issue 15 at load time (tests/bad/115-122), in
-- restart policies, heartbeat checks and autoscale decisions (tests/sandbox/attacks.lua, run by
-- tests/lib/sandbox_child.lua in a child with a timeout), the memory ceiling, the sliced table
-- functions and the step-counted pattern matcher (same answers as Lua's), and stdlib views.
local t = require "t"
local core = require "mw.core"
local fs = require "mw.fs"
local sandbox = require "mw.sandbox"
local stack = require "mw.stack"
local policy = require "mw.policy"
local runner = require "run"     -- `run` is a case's local below

local ROOT = os.getenv("MW_LUA_PATH")
if not ROOT or ROOT == "" then ROOT = "." end
local ABS_ROOT = ROOT:sub(1, 1) == "/" and ROOT or (os.getenv("PWD") .. "/" .. ROOT)
local TIMEOUT = 30      -- a hang fails the case after this; what is expected takes a few seconds

-- Runs mw to completion -> exit status, stdout and stderr together, seconds taken.
local function mw(args, env)
  local e = { "MW_LUA_PATH=" .. ABS_ROOT }
  for _, kv in ipairs(env or {}) do e[#e + 1] = kv end
  local code, out, _, secs = runner.mw(args, { env = e, timeout = TIMEOUT, merge = true })
  return code, out, secs
end

---------------------------------------------------------------------------------------------
-- load time: each attack is a bad stack file, refused in one line well inside a hang

local ATTACKS = { "115-table-move-huge", "116-pattern-backtrack", "117-string-rep-huge", "118-shared-env-million",
                  "119-insert-huge-len", "120-concat-c-index", "121-load-huge", "122-stdlib-mutation" }

for _, name in ipairs(ATTACKS) do
  t.test("load-time attack " .. name .. ": mw check exits 2 with its message, within twice the 2 s budget", function()
    local path = ROOT .. "/tests/bad/" .. name .. ".lua"
    local want = (fs.read(path) or ""):match("^%-%- expect: ([^\n]+)")
    local code, out, took = mw({ "check", path })
    t.eq(code, 2, out)
    t.match(out, want)
    t.ok(not out:find("\n.", 1), "one line: " .. out)
    -- The budget is 2 s of wall time; the stack loads in a fresh process on a loaded machine.
    t.ok(took < 8, string.format("took %.1fs", took))
  end)
end

t.test("the memory ceiling: MW_USER_MEMORY sets it; 20 MB at load passes under 64M, fails under 8M", function()
  local path = ROOT .. "/tests/sandbox/big-string.lua"
  local code, out = mw({ "check", path })
  t.eq(code, 0, out)
  code, out = mw({ "check", path }, { "MW_USER_MEMORY=8M" })
  t.eq(code, 2, out)
  t.match(out, "out of memory %(user code may use 8 MiB more; MW_USER_MEMORY%)")
  code, out = mw({ "check", path }, { "MW_USER_MEMORY=lots" })
  t.eq(code, 0, out)
  t.match(out, "MW_USER_MEMORY=lots is not a size")
end)

---------------------------------------------------------------------------------------------
-- inside the supervisor: the offender gets its fallback, once logged, and nothing hangs

local function child(mode, comp)
  return mw({ "script", ROOT .. "/tests/lib/sandbox_child.lua", ABS_ROOT, mode, comp })
end

local POLICIES = {
  ["p-pattern"] = "budget exceeded", ["p-action"] = "returned an unknown action %(table%)",
  ["p-delay"] = "returned a bad delay %(table%)", ["p-memory"] = "restart policy failed",
  ["p-rep"] = "out of memory", ["p-move"] = "budget exceeded",
  ["p-record"] = "error object is a table value",
}
for comp, why in pairs(POLICIES) do
  t.test("policy " .. comp .. ": the default policy applies, one warning names the component and why", function()
    local code, out = child("policy", comp)
    t.eq(code, 0, out)
    t.match(out, "RESULT restart 0 ")          -- the default's first restart: at once
    local took = tonumber(out:match("RESULT %S+ %S+ (%S+)"))
    t.ok(took and took < 1, "decided in " .. tostring(took) .. " s (budget 0.1 s)")
    local _, warnings = out:gsub("warning: " .. comp:gsub("%-", "%%-") .. ": restart policy failed", "")
    t.eq(warnings, 1, out)
    t.match(out, why)
    -- the supervisor's own record is untouched by what the policy did to its copy
    t.match(out, "RECORD string table")
  end)
end

t.test("policy p-changes: a third result whose __pairs loops is read with next, not pairs", function()
  local code, out = child("policy", "p-changes")
  t.eq(code, 0, out)
  t.match(out, "RESULT recreate 0 ")
end)

t.test("policy p-good still decides as written", function()
  local code, out = child("policy", "p-good")
  t.eq(code, 0, out)
  t.match(out, "RESULT restart 0%.25 ")
  t.ok(not out:find("warning"), out)
end)

for comp, want in pairs { ["c-pattern"] = "check failed: budget exceeded", ["c-why"] = "check said unhealthy" } do
  t.test("heartbeat check " .. comp .. ": a failed heartbeat, while another instance goes on being probed", function()
    local code, out = child("check", comp)
    t.eq(code, 0, out)
    t.match(out, "RESULT heartbeat ")
    t.match(out, want)
    t.match(out, "GOOD healthy true")
  end)
end

for comp, want in pairs { ["a-pattern"] = "budget exceeded", ["a-result"] = "returned %(table%)" } do
  t.test("autoscale decide " .. comp .. ": no scaling, one warning", function()
    local code, out = child("decide", comp)
    t.eq(code, 0, out)
    t.match(out, "RESULT 1 ")
    t.match(out, "autoscale decide failed %(" .. want)
  end)
end

---------------------------------------------------------------------------------------------
-- in this process: the ceiling, the sliced functions, the matcher

t.test("core.budget: the ceiling holds inside, is lifted after, and a nested budget cannot raise it", function()
  local ok, err = core.budget(function() return #string.rep("x", 4 * 1048576) end, { memory = 1048576 })
  t.eq(ok, false)
  t.match(err, "^out of memory")
  t.eq(#string.rep("x", 4 * 1048576), 4 * 1048576, "mw's own code is not limited")
  local ok2, inner_ok, inner_err = core.budget(function()
    return core.budget(function() return #string.rep("y", 4 * 1048576) end, { memory = 64 * 1048576 })
  end, { memory = 1048576 })
  t.eq(ok2, true)
  t.eq(inner_ok, false)
  t.match(inner_err, "out of memory")
  local _, limit = core.memory()
  t.eq(limit, nil, "no ceiling outside a budget")
end)

local function env()
  return sandbox.env(os.getenv("PWD") or "/")
end

t.test("sliced table.move matches an element loop, both directions, overlapping, over many slices", function()
  local e = env()
  local n = 35000
  for _, case in ipairs { { 1, n, 5 }, { 5, n, 1 }, { 1, n, 1 }, { 3, n - 2, 20000 } } do
    local a, b = {}, {}
    for i = 1, n + 25000 do a[i] = i; b[i] = i end
    local f, last, dest = case[1], case[2], case[3]
    local ok, r = core.budget(e.table.move, { instructions = 1e9, seconds = 10 }, a, f, last, dest)
    t.ok(ok, tostring(r))
    t.eq(r, a)
    table.move(b, f, last, dest)
    local same = true
    for i = 1, #b do if a[i] ~= b[i] then same = false break end end
    t.ok(same, "same result for " .. table.concat(case, ","))
  end
  -- to another table, and a second table argument
  local src = {}
  for i = 1, 30000 do src[i] = i end
  local dst = e.table.move(src, 1, 30000, 2, {})
  t.eq(dst[2], 1); t.eq(dst[30001], 30000); t.eq(dst[1], nil)
  -- the library's own checks still speak
  t.match(select(2, pcall(e.table.move, {}, -1, math.maxinteger, 2)), "too many elements")
  t.match(select(2, pcall(e.table.move, {}, 1, math.maxinteger, 2)), "wrap around")
end)

t.test("sliced concat, long sort, insert and remove give the library's answers", function()
  local e = env()
  local a = {}
  for i = 1, 45000 do a[i] = tostring(i % 97) end
  t.eq(e.table.concat(a, ","), table.concat(a, ","))
  t.eq(e.table.concat(a, "", 7, 40000), table.concat(a, "", 7, 40000))
  local xs, ys = {}, {}
  for i = 1, 150000 do local v = (i * 7919) % 100003; xs[i] = v; ys[i] = v end
  e.table.sort(xs); table.sort(ys)
  local same = true
  for i = 1, #ys do if xs[i] ~= ys[i] then same = false break end end
  t.ok(same, "sorted alike")
  e.table.sort(xs, function(p, q) return p > q end)
  t.eq(xs[1], ys[#ys])
  local b, c = {}, {}
  for i = 1, 30000 do b[i] = i; c[i] = i end
  e.table.insert(b, 2, "x"); table.insert(c, 2, "x")
  t.eq(#b, #c); t.eq(b[2], "x"); t.eq(b[30001], c[30001])
  t.eq(e.table.remove(b, 1), table.remove(c, 1))
  t.eq(#b, #c); t.eq(b[1], c[1]); t.eq(b[30000], c[30000])
end)

t.test("table.sort with a comparator that never returns or lies: the hook fires in it", function()
  local e = env()
  local xs = {}
  for i = 1, 1000 do xs[i] = i % 13 end
  local ok, err = core.budget(e.table.sort, { seconds = 0.2 }, xs, function() while true do end end)
  t.eq(ok, false)
  t.match(err, "budget exceeded")
  ok, err = core.budget(e.table.sort, { seconds = 5 }, xs, function() return true end)
  t.ok(ok or err:find("invalid order function"), tostring(err))
  for i = 1, 200000 do xs[i] = i % 13 end
  ok, err = core.budget(e.table.sort, { seconds = 0.2, instructions = 1e12 }, xs, function() return true end)
  t.ok(ok or err:find("budget exceeded") or err:find("invalid order function"), tostring(err))
end)

t.test("load: at most 1 MiB of source, as a string or from a reader", function()
  local e = env()
  local f, err = e.load(("x = 1 "):rep(200000))
  t.eq(f, nil)
  t.match(err, "chunk too large")
  local n = 0
  f, err = e.load(function() n = n + 1 return n < 1000 and ("-- " .. ("x"):rep(2000) .. "\n") or nil end)
  t.eq(f, nil)
  t.match(err, "chunk too large")
  t.ok(e.load("return 1"))
end)

-- The matcher must answer as Lua's own: the same calls inside a budget (ours) and outside (Lua's).
t.test("the bounded matcher answers like Lua's patterns (random patterns and subjects)", function()
  local pieces = { "a", "b", ".", "%a", "%d", "%s", "[ab]", "[^a]", "[a-c]", "*", "+", "-", "?", "(", ")", "()",
                   "%b()", "%f[%w]", "$", "^", "%1", "x", "[%]]", "[]]", "%%", "%.", "[^%s]" }
  local subjects = { "", "a", "ab", "aab", "hello world 123", "(a(b)c)", "aaa bbb", "x=1, y=22", "abcabc", "]]%%" }
  local function run(f, ...)
    local r = table.pack(pcall(f, ...))
    if not r[1] then return "error" end
    local parts = {}
    for i = 2, r.n do parts[#parts + 1] = tostring(r[i]) end
    return table.concat(parts, "|")
  end
  local function gm(s, p)
    local r = {}
    for a, b in s:gmatch(p) do r[#r + 1] = tostring(a) .. "," .. tostring(b); if #r > 20 then break end end
    return table.concat(r, ";")
  end
  local reps = { "<%0>", "%1", "x", { a = "A", b = false }, function(x) return x == "a" and "Q" or nil end }
  local seed, bad = 12345, {}
  local function rand(n) seed = (seed * 1103515245 + 12345) % 2147483648 return seed % n + 1 end
  for _ = 1, 3000 do
    local p = {}
    for _ = 1, rand(6) - 1 do p[#p + 1] = pieces[rand(#pieces)] end
    p = table.concat(p)
    local s, init, rep = subjects[rand(#subjects)], rand(10) - 4, reps[rand(#reps)]
    for _, c in ipairs { { string.find, s, p, init }, { string.match, s, p, init }, { gm, s, p },
                         { string.gsub, s, p, rep }, { string.gsub, s, p, rep, 1 }, { string.find, s, p, init, true } } do
      local lua = run(table.unpack(c))
      local _, ours = core.budget(run, { instructions = 1e9, seconds = 10 }, table.unpack(c))
      if lua ~= ours and #bad < 5 then bad[#bad + 1] = string.format("%q on %q: %s vs %s", p, s, lua, ours) end
    end
  end
  t.eq(#bad, 0, table.concat(bad, "\n"))
end)

t.test("the bounded matcher stops a backtracking pattern and a long plain search at the deadline", function()
  -- in a child: without the matcher, this match would run for years
  local code, out = child("pattern", "-")
  t.eq(code, 0, out)
  t.match(out, "BACKTRACK false budget exceeded")
  t.match(out, "PLAIN false budget exceeded")
  local took = tonumber(out:match("TOOK (%S+)"))
  t.ok(took and took < 2, "stopped after " .. tostring(took) .. " s (budget 0.2 s each)")
  -- the same calls outside a budget are Lua's own
  t.eq(("key=value"):match("^(%w+)=(%w+)$"), "key")
end)

---------------------------------------------------------------------------------------------
-- the stdlib a stack file gets

t.test("a stack file cannot change the shared stdlib, nested tables included; the next load sees it whole", function()
  local s, err = stack.load(ROOT .. "/tests/sandbox/mutate-stdlib.lua")
  t.ok(s, err)
  t.eq(policy.actions.restart, true)
  t.ok(policy.is(policy.default))
  local code, out = mw({ "policy", "preview", ROOT .. "/tests/sandbox/mutate-stdlib.lua", "web", "3" })
  t.eq(code, 0, out)
  t.match(out, "restart")
end)

t.test("mw.health is not offered (README lists the modules a stack file may require)", function()
  local e = env()
  local ok, err = pcall(e.require, "mw.health")
  t.eq(ok, false)
  t.match(err, "not available to stack files")
  t.ok(pcall(e.require, "mw.policy"))
end)

os.exit(t.run())
