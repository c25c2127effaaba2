-- Regression tests for what the fuzzers (make fuzz) and the fault tests found. Each case names
-- the input that broke it; tests/fuzz/regressions/<target>/ holds the fuzzers' own inputs.
local t = require "t"
local fs = require "mw.fs"
local duration = require "mw.duration"
local tmp = require "tmp"
local run = require "run"

local ROOT = os.getenv("MW_LUA_PATH")
if not ROOT or ROOT == "" then ROOT = "." end

local function check_stack(src)
  local d = tmp.dir()
  assert(fs.write_atomic(d .. "/stack.lua", src, 420))
  local code, out = run.mw({ "check", d .. "/stack.lua" }, { timeout = 20, merge = true })
  return code, out
end

local function one_clean_line(code, out, what)
  t.ok(not out:find("traceback", 1, true), what .. ": a traceback: " .. out)
  local _, n = out:gsub("\n", "")
  t.eq(n, 1, what .. ": lines of output: " .. out)
  return code
end

-- fuzz duration: "99999904999998451h" is an integer; times 3600 it wraps around int64.
t.test("duration.parse of a huge integer count of hours is not negative (fuzz: integer-overflow)", function()
  for _, s in ipairs { "99999904999998451h", "5124095576030431h", "9223372036854775807s", "153722867280912931m" } do
    local v = duration.parse(s)
    t.ok(v == nil or v >= 0, s .. " parsed to " .. tostring(v))
  end
end)

t.test("a huge heartbeat grace is refused with one line, not taken as -16s (fuzz: integer-overflow)", function()
  local code, out = check_stack([[return { name = "reg", components = { a = { image = "busybox",
    heartbeat = { grace = "5124095576030431h" } } } }]])
  t.ok(not out:find("grace %-"), "a negative grace in the plan: " .. out)
  one_clean_line(code, out, "grace")
  t.eq(code, 2, out)
end)

-- fuzz duration: format(1.12e28) -> string.format("%dh", 3.1e24) has no integer representation.
t.test("duration.format of any finite duration does not raise (fuzz: huge-format)", function()
  for _, v in ipairs { 1.1222222222222222e+28, 1e76, 2 ^ 63 * 3600, 1e300 } do
    local ok, s = pcall(duration.format, v)
    t.ok(ok, "format(" .. v .. ") raised: " .. tostring(s))
  end
end)

t.test("mw check of a heartbeat interval of 1e23 hours: one line, no traceback (fuzz: huge-format)", function()
  local code, out = check_stack([[return { name = "reg", components = { a = { image = "busybox",
    heartbeat = { interval = "99999999999999999999999h" } } } }]])
  one_clean_line(code, out, "interval")
  t.ok(code == 0 or code == 2, "exit " .. tostring(code))
end)

-- Every input the fuzzers kept as a regression goes through the same checks as in the fuzzer.
local reg = ROOT == "." and "tests/fuzz/regressions" or (ROOT .. "/tests/fuzz/regressions")
local inputs = fs.list(reg .. "/duration") or {}
table.sort(inputs)
t.test(string.format("the %d duration inputs in tests/fuzz/regressions/duration parse and format back", #inputs), function()
  for _, name in ipairs(inputs) do
    local data = assert(fs.read(reg .. "/duration/" .. name))
    for _, v in ipairs { (duration.parse(data)), (tonumber(data) and duration.parse(tonumber(data))) } do
      if v then
        t.ok(v >= 0, name .. ": negative")
        local ok, s = pcall(duration.format, v)
        t.ok(ok, name .. ": format raised: " .. tostring(s))
        local back = duration.parse(s)
        t.ok(back and math.abs(back - v) <= 1e-3 + 1e-9 * v, name .. ": " .. s .. " does not parse back")
      end
    end
  end
end)

os.exit(t.run())
