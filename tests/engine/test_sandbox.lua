-- A restart policy that runs a backtracking pattern, in a running stack: it gets the default
-- policy with one warning per decision, while a second component's failures go on being
-- restarted and `mw status` answers from the live mw.
local t = require "t"
local cjson = require "cjson"
local E = require "engine"
local run = require "run"

local STACK = [==[
local policy = require "mw.policy"
local backoff = require "mw.backoff"
return { name = "NAME", components = {
  bad = { image = "IMAGE", command = { "sh", "-c", "sleep 1; exit 3" },
    restart = function()
      local _ = ("a"):rep(2000):find(("a*"):rep(12) .. "b")
      return "restart", 0
    end },
  other = { image = "IMAGE", command = { "sh", "-c", "sleep 1; exit 4" },
    restart = policy.always { backoff = backoff.constant { delay = "200ms" } } },
} }
]==]

local function mw(args)
  local code, out, err = run.mw(args, { timeout = 60 })
  return code, out, err
end

local function count(evs, event, comp)
  local n = 0
  for _, ev in ipairs(evs) do if ev.event == event and ev.component == comp then n = n + 1 end end
  return n
end

t.test("a policy stuck in a pattern gets the default policy; the other component is still restarted", function()
  local file, stack = E.stack("sandbox", STACK)
  local sdir = E.tmpdir()
  local h = E.mw({ "run", "--log-format", "json", "--state-dir", sdir, file })
  -- bad failed three times: each time its policy overran, the default applied, and it restarted
  t.wait_for(function() return count(h.events(), "failed", "bad") >= 3 end, 90, "bad failed 3 times")
  -- and other kept failing and being restarted meanwhile
  t.wait_for(function() return count(h.events(), "failed", "other") >= 3 end, 90, "other failed 3 times")
  local evs = h.events()
  for _, ev in ipairs(evs) do
    if ev.event == "failed" then t.eq(ev.action, "restart", cjson.encode(ev)) end
    if ev.event == "policy_error" then
      t.eq(ev.component, "bad", cjson.encode(ev))
      t.match(ev.msg, "restart policy failed %(budget exceeded")
      t.match(ev.msg, "the default policy applies")
    end
  end
  -- one warning per decision of bad's policy (each failure before the last read is decided)
  local warned = count(evs, "policy_error", "bad")
  t.ok(warned >= 3 and warned <= count(evs, "failed", "bad") + 1, "one warning per decision: " .. warned)
  -- bad was started again after its failures, on the default policy's growing delays
  t.ok(count(evs, "restarted", "bad") >= 2, "bad restarted")
  -- the default's first-restart rule: the first failure at once, the second after 100 ms
  t.ok(h.text():find("exited with code 3; restart at once", 1, true), "the default policy's first restart")
  t.ok(h.text():find("exited with code 3; restart in 100ms", 1, true), "the default policy's second delay")
  -- mw status answers from the live mw
  local code, out, errs = mw { "status", "--json", "--state-dir", sdir, "--stack", stack }
  t.eq(code, 0, errs)
  local ok, doc = pcall(cjson.decode, out)
  t.ok(ok, out)
  t.eq(doc.stacks[1].live, true)
  local names = {}
  for _, c in ipairs(doc.stacks[1].components) do names[c.name] = c.state end
  t.ok(names.bad and names.other, out)
  t.eq(h.stop(), 0)
  t.ok(not h.text():find("mw: task .- failed"), "no task of mw failed")
end)

os.exit(E.run(t))
