-- mw stop, start, restart and down against the real engine, with and without a running mw: the
-- stop order read from the containers' own exit times, stop_grace honoured, a user's stop not
-- recovered, a given-up component restarted under its policy afresh, down's removals.
local t = require "t"
local timestamp = require "mw.timestamp"
local cjson = require "cjson"
local E = require "engine"
local run = require "run"

local e = E.engine()

-- Deadlines are generous: on a loaded machine a container takes tens of seconds to start.
local SLOW = 240

local function mw(args, timeout)
  return run.mw(args, { timeout = timeout or SLOW })
end

-- s as a pattern matching itself
local function lit(s) return (s:gsub("[%^%$%(%)%%%.%[%]%*%+%-%?]", "%%%0")) end

local function lines(s)
  local n = 0
  for _ in s:gmatch("[^\n]*\n") do n = n + 1 end
  return n
end

-- A loop that ends at once on SIGTERM: `wait` is interrupted by a trapped signal, a foreground
-- sleep is not.
local QUICK = [[trap 'exit 0' TERM; while :; do sleep 1 & wait $!; done]]

-- db <- app <- web, and side on its own; with a named volume on db.
local CHAIN = [==[
local policy = require "mw.policy"
return { name = "NAME", components = {
  db = { image = "IMAGE", command = { "sh", "-c", QUICK }, volumes = { "data:/data" } },
  app = { image = "IMAGE", command = { "sh", "-c", QUICK }, depends_on = { db = "started" } },
  web = { image = "IMAGE", command = { "sh", "-c", QUICK }, depends_on = { app = "started" } },
  side = { image = "IMAGE", command = { "sh", "-c", QUICK } },
  -- traps TERM and needs 3 s to end it: its grace of 1 s ends in SIGKILL
  stubborn = { image = "IMAGE", stop_grace = "1s",
    command = { "sh", "-c", "trap 'echo TERM; sleep 3; exit 0' TERM; while :; do sleep 1 & wait $!; done" } },
  -- traps TERM and needs 1 s: its grace of 8 s lets it finish
  patient = { image = "IMAGE", stop_grace = "8s",
    command = { "sh", "-c", "trap 'echo TERM; sleep 1; exit 0' TERM; while :; do sleep 1 & wait $!; done" } },
} }
]==]

local function chain_stack(short)
  return E.stack(short, (CHAIN:gsub("QUICK", string.format("%q", QUICK))))
end

local function finished(stack, comp) return timestamp.epoch(E.inspect_one(stack, comp).State.FinishedAt) end
local function started(stack, comp) return timestamp.epoch(E.inspect_one(stack, comp).State.StartedAt) end
local function state(stack, comp) return E.inspect_one(stack, comp).State.Status end

local function status_json(sdir, stack)
  return E.rows(E.status({ "status", "--json", "--state-dir", sdir, "--stack", stack }, SLOW))
end

local ALL = { "db", "app", "web", "side", "stubborn", "patient" }

-- The stop order and the graces, as the containers saw them.
local function check_stopped(stack, opts)
  for _, c in ipairs(opts.comps or ALL) do
    t.eq(state(stack, c), "exited", c .. " stopped")
    -- its network holder too (mw.holder): nothing keeps its address or ports
    local holder = E.net_of(E.inspect_one(stack, c))
    t.ok(holder.Id ~= E.inspect_one(stack, c).Id, c .. " is held")
    t.eq(holder.State.Status, "exited", c .. "'s network holder stopped")
  end
  local w, a, d = finished(stack, "web"), finished(stack, "app"), finished(stack, "db")
  print(string.format("  # exit times: web %.3f, app +%.3f, db +%.3f", w, a - w, d - w))
  t.ok(w <= a and a <= d, "web before app before db")
  if opts.graces ~= false then
    local s, p = E.inspect_one(stack, "stubborn"), E.inspect_one(stack, "patient")
    t.eq(s.State.ExitCode, 137, "stubborn: SIGKILL after its 1s grace")
    t.eq(p.State.ExitCode, 0, "patient: ended by itself within its 8s grace")
    for _, c in ipairs { "stubborn", "patient" } do
      local _, out = mw { "logs", "--stack", stack, c }
      t.match(out, "TERM", c .. " got SIGTERM first")
    end
  end
end

local function wait_all_running(stack, comps)
  return t.wait_for(function()
    local by = E.containers(stack)
    for _, c in ipairs(comps or ALL) do
      if not by[c] or #by[c] ~= 1 or by[c][1].State ~= "running" then return false end
    end
    return true
  end, SLOW, "all running")
end

-- ---------------------------------------------------------------------------------------------

t.test("without mw: stop goes dependents first with each stop_grace, status says so, start in order", function()
  local file, stack = chain_stack("nostop")
  local sdir = E.tmpdir()
  local h = E.mw { "run", "--log-format", "json", "--state-dir", sdir, file }
  wait_all_running(stack)
  h.wait_event({ event = "started", component = "web" }, SLOW)
  t.eq(h.stop(), 0)
  local code, out, err = mw { "stop", "--state-dir", sdir, file }
  t.eq(code, 0, err)
  t.match(out, "stopped " .. lit(stack) .. "%-web")
  check_stopped(stack, {})
  local rows = status_json(sdir, stack)
  t.eq(rows.app.state, "user_stopped")
  t.eq(rows.app.network, "held")
  t.eq(rows.app.holder.state, "exited", "status shows the stopped holder")
  local _, text = mw { "status", "--state-dir", sdir, file }
  t.match(text, "\napp%s+stopped %(by user%)[^\n]*held %(holder exited%)\n")

  code, out, err = mw { "start", "--state-dir", sdir, file }
  t.match(out, "started " .. lit(stack) .. "%-db")
  t.eq(code, 0, err)
  wait_all_running(stack)
  t.ok(started(stack, "db") <= started(stack, "app") and started(stack, "app") <= started(stack, "web"),
    "db, then app, then web")
  t.eq(status_json(sdir, stack).app.state, "running")

  -- one component: only it stops; start of web brings back what it depends on
  code, out, err = mw { "stop", "--state-dir", sdir, file, "app", "db" }
  t.eq(code, 0, err)
  t.eq(state(stack, "web"), "running")
  t.eq(E.net_of(E.inspect_one(stack, "web")).State.Status, "running", "web's holder untouched")
  t.eq(E.net_of(E.inspect_one(stack, "app")).State.Status, "exited", "app's holder stopped")
  t.match(out, "stopped network holder " .. lit(stack) .. "%-app%.net")
  t.ok(finished(stack, "app") <= finished(stack, "db"), "app before db")
  code, _, err = mw { "start", "--state-dir", sdir, file, "web" }
  t.eq(code, 0, err)
  wait_all_running(stack)
end)

t.test("without mw: restart stops in order and starts in order", function()
  local file, stack = chain_stack("norestart")
  local sdir = E.tmpdir()
  local h = E.mw { "run", "--log-format", "json", "--state-dir", sdir, file }
  wait_all_running(stack)
  t.eq(h.stop(), 0)
  local before = started(stack, "db")
  local code, _, err = mw { "restart", "--state-dir", sdir, file, "db", "app", "web" }
  t.eq(code, 0, err)
  wait_all_running(stack)
  t.ok(started(stack, "db") > before, "db started again")
  t.ok(finished(stack, "web") <= finished(stack, "app") and finished(stack, "app") <= finished(stack, "db"),
    "stopped web, app, db")
  t.ok(started(stack, "db") <= started(stack, "app") and started(stack, "app") <= started(stack, "web"),
    "started db, app, web")
end)

t.test("with mw: stop is the user's (not recovered, status says so); start brings them back", function()
  local file, stack = chain_stack("mwstop")
  local sdir = E.tmpdir()
  local h = E.mw { "run", "--log-format", "json", "--state-dir", sdir, file }
  wait_all_running(stack)
  for _, c in ipairs(ALL) do h.wait_event({ event = "started", component = c }, SLOW) end
  local code, out, err = mw { "stop", "--state-dir", sdir, file }
  t.eq(code, 0, err)
  t.match(out, "app user stopped")
  check_stopped(stack, {})
  local rows = status_json(sdir, stack)
  for _, c in ipairs(ALL) do t.eq(rows[c].state, "user_stopped", c) end
  t.wait_for(function()
    rows = status_json(sdir, stack)
    return rows.web.holder and rows.web.holder.state == "stopped"
  end, SLOW, "mw status: web's network holder stopped")
  t.eq(rows.web.network, "held")
  local _, text = mw { "status", "--state-dir", sdir, file }
  t.match(text, "\nweb%s+stopped %(by user%)[^\n]*held %(holder stopped%)\n")

  code, _, err = mw { "start", "--state-dir", sdir, file, "side" }
  t.eq(code, 0, err)
  -- a barrier: side killed now, and recovered, means mw has handled every event before it
  local n = h.mark()
  assert(e:kill(E.containers(stack).side[1].Id, "KILL"))
  h.wait_event({ event = "restarting", component = "side" }, SLOW, n)
  h.wait_event({ event = "restarted", component = "side" }, SLOW, n)
  for _, ev in ipairs(h.events()) do
    if ev.component ~= "side" then
      t.ok(ev.event ~= "failed" and ev.event ~= "restarting" and ev.event ~= "gave_up",
        "no recovery of a stopped component: " .. cjson.encode(ev))
    end
  end
  t.eq(state(stack, "app"), "exited")

  code, out, err = mw { "start", "--state-dir", sdir, file, "web" }
  t.eq(code, 0, err)
  t.match(out, "web running")
  t.match(out, "db running")
  t.ok(started(stack, "db") <= started(stack, "app") and started(stack, "app") <= started(stack, "web"), "in order")
  t.eq(state(stack, "stubborn"), "exited", "not named, not a dependency: still stopped")
  rows = status_json(sdir, stack)
  t.eq(rows.web.state, "running")
  t.eq(rows.stubborn.state, "user_stopped")
  t.eq(h.stop(), 0)
end)

t.test("with mw: restart of a given-up component runs it under its policy afresh; API and restart in order", function()
  local file, stack = E.stack("mwrestart", ([==[
local policy = require "mw.policy"
return { name = "NAME", components = {
  db = { image = "IMAGE", command = { "sh", "-c", QUICK } },
  app = { image = "IMAGE", command = { "sh", "-c", QUICK }, depends_on = { db = "started" } },
  -- fails after a moment; one restart, then it gives up
  quit = { image = "IMAGE", command = { "sh", "-c", "sleep 0.3; exit 4" },
    restart = policy.on_failure { limit = { restarts = 1, within = "1h" }, ["then"] = "give_up" } },
} }
]==]):gsub("QUICK", string.format("%q", QUICK)))
  local sdir = E.tmpdir()
  local h = E.mw { "run", "--log-format", "json", "--state-dir", sdir, file }
  local _, at = h.wait_event({ event = "gave_up", component = "quit" }, SLOW)
  local restarts = 0
  for i = 1, at do
    local ev = h.events()[i]
    if ev.component == "quit" and ev.event == "restarting" then restarts = restarts + 1 end
  end
  t.eq(restarts, 1, "one restart before giving up")
  local code, out, err = mw { "restart", "--state-dir", sdir, file, "quit" }
  -- it runs again; its policy, afresh, restarts it once more before giving up again
  t.ok(code == 0 or code == 1, err)
  t.match(out, "quit ")
  local ev2, at2 = h.wait_event({ event = "gave_up", component = "quit" }, SLOW, at)
  t.ok(ev2, "gave up again")
  local again = 0
  for i = at + 1, at2 do
    local ev = h.events()[i]
    if ev.component == "quit" and ev.event == "restarting" and ev.action then again = again + 1 end
  end
  t.eq(again, 1, "its policy restarted it once more: the history was cleared")
  t.eq(status_json(sdir, stack).quit.restarts >= 2, true)

  -- restart of the chain: app stops before db, db starts before app
  local db0 = started(stack, "db")
  code, _, err = mw { "restart", "--state-dir", sdir, file, "db", "app" }
  t.eq(code, 0, err)
  t.ok(started(stack, "db") > db0, "db restarted")
  t.ok(finished(stack, "app") <= finished(stack, "db"), "app stopped first")
  t.ok(started(stack, "db") <= started(stack, "app"), "db started first")
  local rows = status_json(sdir, stack)
  t.eq(rows.db.state, "running")
  t.eq(rows.app.state, "running")
  t.eq(h.stop(), 0)
end)

local function down_checks(stack, volumes_kept)
  t.eq(next(E.containers(stack)), nil, "no containers")
  local nets = e:network_list { label = { "used-by=millwright", "mw.stack=" .. stack } }
  t.eq(#nets, 0, "no network")
  local vols = e:volume_list { label = { "used-by=millwright", "mw.stack=" .. stack } }
  t.eq(#vols, volumes_kept and 1 or 0, "named volume " .. (volumes_kept and "kept" or "removed"))
  local imgs = e:image_list { label = { "used-by=millwright", "mw.test=" .. E.run_id } }
  t.ok(#imgs >= 1, "images kept")
end

t.test("down, with mw and without: stops in order, removes containers and network, keeps volumes unless --volumes", function()
  local file, stack = chain_stack("down")
  local sdir = E.tmpdir()
  -- with mw: it stops every component and exits
  local h = E.mw { "run", "--log-format", "json", "--state-dir", sdir, file }
  wait_all_running(stack)
  for _, c in ipairs(ALL) do h.wait_event({ event = "started", component = c }, SLOW) end
  local code, out, err = mw { "down", "--state-dir", sdir, file }
  t.eq(code, 0, err)
  t.match(out, "removed container " .. lit(stack) .. "%-db")
  t.match(out, "removed network")
  t.match(err, "kept 1 volume")
  t.eq(h.p:wait(SLOW), 0, "mw exited")
  h.wait_event({ event = "down" }, 5)
  local stops = {}
  for _, ev in ipairs(h.events()) do
    if ev.event == "user_stopped" then stops[#stops + 1] = ev.component end
  end
  local pos = {}
  for i, c in ipairs(stops) do pos[c] = i end
  t.ok(pos.web and pos.app and pos.db and pos.web < pos.app and pos.app < pos.db, "web, app, db: " .. table.concat(stops, ","))
  down_checks(stack, true)

  -- without mw, and --volumes
  h = E.mw { "run", "--log-format", "json", "--state-dir", sdir, file }
  wait_all_running(stack)
  t.eq(h.stop(), 0)
  code, out, err = mw { "down", "--volumes", "--state-dir", sdir, file }
  t.eq(code, 0, err)
  t.match(out, "stopped " .. lit(stack) .. "%-web")
  t.match(out, "removed volume")
  local wpos, apos, dpos = out:find("stopped " .. stack .. "-web", 1, true), out:find("stopped " .. stack .. "-app", 1, true),
    out:find("stopped " .. stack .. "-db", 1, true)
  t.ok(wpos < apos and apos < dpos, "stopped web, app, db:\n" .. out)
  down_checks(stack, false)
  -- nothing left: a second down says so
  code, out, err = mw { "down", "--state-dir", sdir, file }
  t.eq(code, 1)
  t.eq(out, "")
  t.eq(lines(err), 1, err)
end)

t.test("bad input: unknown component, unknown stack, bad option: one line, exit code, nothing changed", function()
  local file, stack = chain_stack("bad")
  local sdir = E.tmpdir()
  local h = E.mw { "run", "--log-format", "json", "--state-dir", sdir, file }
  wait_all_running(stack)
  t.eq(h.stop(), 0)
  local before = {}
  for c, l in pairs(E.containers(stack)) do before[c] = l[1].Id end
  for _, cmd in ipairs { "stop", "start", "restart" } do
    local code, out, err = mw { cmd, "--state-dir", sdir, file, "app", "nosuch" }
    t.eq(code, 1, cmd)
    t.eq(out, "")
    t.eq(lines(err), 1, err)
    t.match(err, "no component nosuch in stack " .. lit(stack))
    code, out, err = mw { cmd, "--stack", "nosuch-" .. E.run_id, "--state-dir", sdir }
    t.eq(code, 1, cmd)
    t.eq(out, "")
    t.eq(lines(err), 1, err)
    t.match(err, "no stack nosuch%-")
    code, _, err = mw { cmd, "--bogus", file }
    t.eq(code, 2)
    t.eq(lines(err), 1, err)
  end
  local code, _, err = mw { "down", "--stack", "nosuch-" .. E.run_id, "--state-dir", sdir }
  t.eq(code, 1)
  t.eq(lines(err), 1, err)
  code, _, err = mw { "down", file, "web" }
  t.eq(code, 2)
  t.eq(lines(err), 1, err)
  -- nothing changed: the same containers, all running
  for c, l in pairs(E.containers(stack)) do
    t.eq(l[1].Id, before[c])
    t.eq(l[1].State, "running", c)
  end
end)

os.exit(E.run(t))
