-- Unit tests of the commands (lua/mw/cli.lua, cmd_*.lua, lookup.lua, timestamp.lua): the
-- command table and `mw help`; durations, engine timestamps and statuses, live or engine
-- status, rows and tables, ambiguity messages, inspect's endpoint, destroy's label checks;
-- and the usage errors that exit before any engine is asked.
if not pcall(require, "t") then package.path = "tests/lib/?.lua;" .. package.path end
local t = require "t"
local fs = require "mw.fs"
local cli = require "mw.cli"
local lookup = require "mw.lookup"
local timestamp = require "mw.timestamp"
local status = require "mw.cmd_status"
local inspect = require "mw.cmd_inspect"
local destroy = require "mw.cmd_destroy"
local logs = require "mw.cmd_logs"
local exec = require "mw.cmd_exec"
local tmp = require "tmp"
local runner = require "run"     -- `run` is a case's local below

t.test("one table of commands: each runs through its module, and mw help lists it", function()
  local text = cli.help_text()
  local at = 1
  for _, command in ipairs(cli.COMMANDS) do
    t.eq(cli.command(command.name), command)
    if command.module then
      local mod = require(command.module)
      t.eq(type(mod[command.fn or "main"]), "function", command.name .. ": " .. command.module)
      t.eq(mod._test, nil, command.module .. ": helpers are its API, not a _test table")
    else
      t.eq(type(command.run), "function", command.name)
    end
    if command.help then
      local from, to = text:find(command.help, at, true)
      t.ok(from, command.name .. " is in mw help, in the table's order")
      at = (to or at) + 1
    end
  end
  -- every command mw help names is in the table
  local section = text:match("\ncommands:\n(.-)\n\n")
  local listed = 0
  for name in section:gmatch("\n  (%l+)") do
    listed = listed + 1
    t.ok(cli.command(name), "mw help names " .. name)
  end
  t.ok(text:find("^  run ", #text:match("^.-\ncommands:\n") + 1), "run comes first")
  local with_help = 0
  for _, command in ipairs(cli.COMMANDS) do if command.help then with_help = with_help + 1 end end
  t.eq(listed, with_help - 1, "mw help's commands after run are the table's, no more")
  t.eq(cli.command("--help").name, "help")
  t.eq(cli.command("-h").name, "help")
  t.eq(cli.command("--version").name, "version")
  t.eq(cli.command("bogus"), nil)
  t.eq(cli.command("script").help, nil, "mw script is not listed")
end)

t.test("mw help <command>: that command's lines and the exit statuses", function()
  for _, command in ipairs(cli.COMMANDS) do
    if command.help and command.name ~= "help" then
      local text = cli.command_help(command.name)
      t.ok(text and text:find(command.help:gsub("^  ", ""), 1, true), command.name)
      t.match(text, "\nexit status:\n")
    end
  end
  t.match(cli.command_help("stop"), "^usage: mw %[%-%-label NAME%] stop %[component%.%.%.%]")
  t.eq(cli.command_help("bogus"), nil)
  t.eq(cli.command_help("script"), nil)
end)

t.test("durations for table cells", function()
  t.eq(status.duration(nil), "-")
  t.eq(status.duration(0), "0s")
  t.eq(status.duration(-3), "0s")
  t.eq(status.duration(59.9), "59s")
  t.eq(status.duration(60), "1m00s")
  t.eq(status.duration(184), "3m04s")
  t.eq(status.duration(7500), "2h05m")
  t.eq(status.duration(86400 + 3600 + 59), "1d01h")
end)

t.test("exit codes from the engine's Status text", function()
  t.eq(status.exit_code_of("Exited (3) 5 seconds ago"), 3)
  t.eq(status.exit_code_of("Exited (137) About a minute ago"), 137)
  t.eq(status.exit_code_of("Exited (0) 2 hours ago"), 0)
  t.eq(status.exit_code_of("Up 5 seconds"), nil)
  t.eq(status.exit_code_of(nil), nil)
  t.eq(status.exit_code_of("Created"), nil)
end)

t.test("engine timestamps are UTC whatever the local zone", function()
  local s, ns = timestamp.parse("1970-01-01T00:00:00Z")
  t.eq(s, 0) t.eq(ns, 0)
  s, ns = timestamp.parse("2000-01-01T00:00:00.123456789Z")
  t.eq(s, 946684800) t.eq(ns, 123456789)
  s, ns = timestamp.parse("2000-03-01T00:00:00.5Z")
  t.eq(s, 951868800) t.eq(ns, 500000000)
  t.eq(timestamp.parse("2000-01-01T01:00:00+01:00"), 946684800)
  t.eq(timestamp.parse("1999-12-31T19:00:00-05:00"), 946684800)
  t.eq(timestamp.parse("2024-02-29T12:00:00Z"), 1709208000)
  t.eq(timestamp.parse("0001-01-01T00:00:00Z"), nil, "the zero time is no time")
  t.eq(timestamp.parse("yesterday"), nil)
  t.eq(timestamp.epoch("2000-01-01T00:00:00.25Z"), 946684800.25)
end)

t.test("log timestamps order as strings and give the since the engine takes", function()
  local a, since = timestamp.log_key("2026-11-30T01:02:03.000000009Z")
  local b = timestamp.log_key("2026-11-30T01:02:03.00000001Z")
  local c = timestamp.log_key("2026-11-30T01:02:04Z")
  t.ok(a < b and b < c, "ordered")
  t.match(since, "^%d+%.000000009$")
  local k = timestamp.key_of(946684800.5)
  t.eq(k, timestamp.log_key("2000-01-01T00:00:00.5Z"))
end)

t.test("a status file is live only with a live pid and a recent update", function()
  local alive = function(pid) return pid == 42 end
  t.eq(lookup.is_live({ pid = 42, updated = 1000 }, 1003, alive), true)
  t.eq(lookup.is_live({ pid = 42 }, 1003, alive), true)
  t.eq(lookup.is_live({ pid = 7, updated = 1000 }, 1003, alive), false, "dead pid")
  t.eq(lookup.is_live({ pid = 42, updated = 1000 }, 1100, alive), false, "not updated for 100 s: a reused pid")
  t.eq(lookup.is_live({ updated = 1000 }, 1000, alive), false, "no pid")
  t.eq(lookup.is_live({ pid = "42" }, 1000, alive), false)
  t.eq(lookup.is_live(nil, 1000, alive), false)
end)

local function ctr(stack, comp, state, extra)
  local x = { Id = (extra and extra.Id) or (stack .. "-" .. comp .. "-id"), State = state, Created = 100,
              Labels = { ["used-by"] = "millwright", ["mw.stack"] = stack, ["mw.component"] = comp } }
  for k, v in pairs(extra or {}) do x[k] = v end
  return x
end

t.test("a component name is looked up across stacks and ambiguity asks for --stack", function()
  t.eq(lookup.pick_stack("web", { ctr("a", "web", "running") }), "a")
  t.eq(lookup.pick_stack("web", { ctr("a", "web", "running"), ctr("a", "web", "exited", { Id = "2" }) }), "a")
  local s, msg = lookup.pick_stack("web", { ctr("b", "web", "running"), ctr("a", "web", "running") })
  t.eq(s, nil)
  t.eq(msg, "component web is in stacks a, b: say which with --stack")
  s, msg = lookup.pick_stack("web", {})
  t.eq(s, nil)
  t.match(msg, "^no component web")
  t.ok(not msg:find("\n"), "one line")
  s, msg = lookup.pick_stack("web", {}, "shop")
  t.eq(s, nil)
  t.eq(msg, "no component web in stack shop")
end)

t.test("the current container: a running one first, then the newest", function()
  local old = ctr("a", "w", "exited", { Id = "old", Created = 1 })
  local new = ctr("a", "w", "exited", { Id = "new", Created = 2 })
  local run = ctr("a", "w", "running", { Id = "run", Created = 0 })
  t.eq(lookup.current({ old, new }).Id, "new")
  t.eq(lookup.current({ old, run, new }).Id, "run")
  t.eq(lookup.current({}), nil)
end)

t.test("rows from the engine: exit codes, uptime, last failure", function()
  local x = ctr("a", "crash", "exited", { Status = "Exited (3) 5 seconds ago" })
  local r = status.engine_row(x, nil, 1000)
  t.eq(r.state, "exited") t.eq(r.exit_code, 3) t.eq(r.source, "engine") t.eq(r.name, "crash")
  t.eq(r.last_failure.reason, "exited")
  t.eq(status.state_text(r), "exited (code 3)")
  local info = { State = { Status = "exited", ExitCode = 4, FinishedAt = "2000-01-01T00:00:00Z", OOMKilled = false } }
  r = status.engine_row(x, info, 946684812)
  t.eq(r.exit_code, 4, "inspect wins over the Status text")
  t.eq(status.failure_text(r.last_failure, 946684812), "exited 4, 12s ago")
  t.eq(status.engine_row(ctr("a", "ok", "exited", { Status = "Exited (0) 1 second ago" }), nil, 0).last_failure, nil,
    "a clean exit is no failure")
  local up = status.engine_row(ctr("a", "web", "running"), { State = { StartedAt = "2000-01-01T00:00:00Z" } }, 946684900)
  t.eq(up.uptime, 100)
  t.eq(status.row_cells(up, 0)[4], "1m40s")
end)

t.test("instances: keys from labels, the first running instance is the current one", function()
  t.same({ lookup.identity { ["mw.component"] = "web" } }, { "web", 1, "web" })
  t.same({ lookup.identity { ["mw.component"] = "web", ["mw.instance"] = "1" } }, { "web", 1, "web" })
  t.same({ lookup.identity { ["mw.component"] = "web", ["mw.instance"] = "3" } }, { "web", 3, "web-3" })
  local i2 = ctr("a", "web", "running", { Id = "i2", Created = 9 })
  i2.Labels["mw.instance"] = "2"
  local i1 = ctr("a", "web", "running", { Id = "i1", Created = 1 })
  local dead1 = ctr("a", "web", "exited", { Id = "d1", Created = 10 })
  t.eq(lookup.current({ i2, i1 }).Id, "i1")
  t.eq(lookup.current({ dead1, i2 }).Id, "i2", "running first")
  local r = status.engine_row(i2, nil, 0)
  t.eq(r.name, "web-2") t.eq(r.component, "web") t.eq(r.instance, 2)
end)

local DEF = { name = "a", order = { "db", "web", "ghost" }, components = { db = {}, web = {}, ghost = {} } }

t.test("status: the engine's view, with 'not created' for what the file has and the engine lacks", function()
  local st = status.stack_status {
    stack = "a", def = DEF, now = 1000,
    containers = { ctr("a", "web", "running"), ctr("a", "db", "exited", { Status = "Exited (1) 1 second ago" }) },
  }
  t.eq(st.live, false)
  t.eq(#st.components, 3)
  t.same({ st.components[1].name, st.components[2].name, st.components[3].name }, { "db", "web", "ghost" },
    "in the file's order")
  t.eq(st.components[3].state, "not_created")
  t.eq(status.state_text(st.components[3]), "not created")
  t.eq(st.components[1].exit_code, 1)
end)

t.test("status: scaled components, one row per instance in order", function()
  local def = { name = "a", order = { "web" }, components = { web = { scale = 3 } } }
  local i3 = ctr("a", "web", "running", { Id = "i3" })
  i3.Labels["mw.instance"] = "3"
  local st = status.stack_status { stack = "a", def = def, now = 0, containers = { i3, ctr("a", "web", "running") } }
  local names = {}
  for i, r in ipairs(st.components) do names[i] = r.name .. " " .. r.state end
  t.same(names, { "web running", "web-2 not_created", "web-3 running" })
end)

t.test("status: a live mw's rows win, aged by the file's age; extra containers still show", function()
  local live = { stack = "a", pid = 42, since = 900, updated = 995, components = {
    { name = "web", state = "healthy", container = "a-web-id", restarts = 2, uptime = 10, heartbeat = "http",
      heartbeat_latency = 0.004 },
    { name = "db", state = "backoff", retry_at = 1060, restarts = 1,
      last_failure = { reason = "exited", exit_code = 1, time = 988 } },
  } }
  local st = status.stack_status {
    stack = "a", live = live, now = 1000,
    containers = { ctr("a", "web", "running"), ctr("a", "old", "exited", { Status = "Exited (0) 1 hour ago" }) },
  }
  t.eq(st.live, true) t.eq(st.pid, 42)
  t.eq(#st.components, 3)
  local web, db, old = st.components[1], st.components[2], st.components[3]
  t.eq(web.name, "web") t.eq(web.source, "mw") t.eq(web.uptime, 15, "10 s when written 5 s ago")
  t.eq(db.name, "db") t.eq(db.source, "mw")
  t.eq(old.name, "old") t.eq(old.source, "engine")
  t.eq(status.state_text(db), "backing off until " .. os.date("%H:%M:%S", 1060))
  t.eq(status.failure_text(db.last_failure, 1000), "exited 1, 12s ago")
  local cells = status.row_cells(web, 1000)
  t.same(cells, { "web", "healthy", "a-web-id", "15s", "2", "-", "http 4ms", "-" })
  -- where its network namespace comes from
  web.network, web.holder = "held", { name = "a-web.net", container = "h1", state = "running" }
  t.eq(status.row_cells(web, 1000)[8], "held")
  web.holder.state = "exited"
  t.eq(status.row_cells(web, 1000)[8], "held (holder exited)")
  web.network, web.holder = "service:db", nil
  t.eq(status.row_cells(web, 1000)[8], "service:db")
  t.eq(status.row_cells(db, 1000)[4], "-", "no uptime while backing off")
  -- the path heartbeats take shows after the latency
  web.heartbeat_via = "netns"
  t.eq(status.row_cells(web, 1000)[7], "http 4ms netns")
  web.heartbeat_via, web.heartbeat_latency = "published", nil
  t.eq(status.row_cells(web, 1000)[7], "http published")
end)

t.test("status: the network column from the engine's list (NetworkMode)", function()
  local holders = { ["aa11"] = { Id = "aa11", Names = { "/a-web.net" }, State = "exited" } }
  local function net(mode) return status.network_of({ HostConfig = { NetworkMode = mode }, Labels = {} }, holders) end
  local n, h = net("container:aa11")
  t.eq(n, "held") t.same(h, { name = "a-web.net", container = "aa11", state = "exited" })
  t.eq(net("container:bb22"), "container:bb22", "a holder no longer there")
  t.eq(net("mw-a"), "own") t.eq(net("default"), "own")
  t.eq(net("host"), "host") t.eq(net("container:a-db.net"), "container:a-db.net")
  local row = status.engine_row(ctr("a", "web", "running", { HostConfig = { NetworkMode = "container:aa11" } }), nil, 0,
    holders)
  t.eq(row.network, "held") t.eq(status.row_cells(row, 0)[8], "held (holder exited)")
end)

t.test("state texts", function()
  t.eq(status.state_text { state = "gave_up" }, "gave up")
  t.eq(status.state_text { state = "backoff" }, "backing off")
  t.eq(status.state_text { state = "starting" }, "starting")
  t.eq(status.state_text { state = "exited" }, "exited")
  t.eq(status.state_text { state = "waiting" }, "waiting for dependencies")
  t.eq(status.failure_text({ reason = "heartbeat" }, 0), "heartbeat")
  t.eq(status.failure_text({ reason = "oom", time = 0 }, 200), "out of memory, 3m20s ago")
  t.eq(status.failure_text(nil, 0), "-")
end)

t.test("tables: columns aligned on the plain text, colours do not shift them", function()
  local rows = { { "a", "healthy", "x" }, { "longer", "gave up", "yy" } }
  local lines = status.table_lines({ "NAME", "STATE", "C" }, rows)
  t.same(lines, { "NAME    STATE    C", "a       healthy  x", "longer  gave up  yy" })
  local painted = status.table_lines({ "NAME", "STATE", "C" }, rows, function(col, text)
    return col == 2 and ("\27[32m" .. text .. "\27[0m") or text
  end)
  t.eq(painted[2]:gsub("\27%[%d+m", ""), lines[2])
  t.eq(painted[1], lines[1], "no colour in the header")
end)

t.test("indenting JSON keeps order, numbers and strings as received", function()
  local src = '{"b":1,"a":[1,2.50,{}],"s":"x{,}\\"y:[","e":[],"n":{"k":null}}'
  t.eq(inspect.indent_json(src), table.concat({
    "{",
    '  "b": 1,',
    '  "a": [',
    "    1,",
    "    2.50,",
    "    {}",
    "  ],",
    '  "s": "x{,}\\"y:[",',
    '  "e": [],',
    '  "n": {',
    '    "k": null',
    "  }",
    "}",
    "",
  }, "\n"))
  t.eq(inspect.indent_json(" 42 "), "42\n")
  t.eq(inspect.indent_json('{ "a" : true }'), '{\n  "a": true\n}\n')
end)

t.test("inspect's endpoint: live row, stack definition, container env; no heartbeat says so", function()
  local info = { Id = "c1", Config = { Env = { "PATH=/bin", "INTROSPECTION_PORT=9000" } },
    NetworkSettings = { Ports = { ["9000/tcp"] = { { HostIp = "127.0.0.1", HostPort = "32001" } },
                                  ["8089/tcp"] = { { HostIp = "127.0.0.1", HostPort = "32002" } },
                                  ["7000/tcp"] = { { HostIp = "10.0.0.5", HostPort = "32003" } } } } }
  local ep = inspect.endpoint("web", { container = "c1", heartbeat = "http", heartbeat_port = 40000 }, nil, info)
  t.same(ep, { port = 40000, container_port = 9000, path = "/debug/vars" })
  ep = inspect.endpoint("web", { container = "c1", heartbeat = "http", heartbeat_port = 40000, heartbeat_path = "/v" },
    nil, info)
  t.eq(ep.path, "/v")
  -- a live row about an older container: its port is stale
  ep = inspect.endpoint("web", { container = "c0", heartbeat = "http", heartbeat_port = 40000 }, nil, info)
  t.eq(ep.port, 32001)
  ep = inspect.endpoint("web", nil, { heartbeat = { kind = "http", port = 8089, path = "/status" } }, info)
  t.same(ep, { port = 32002, container_port = 8089, path = "/status" })
  ep = inspect.endpoint("web", nil, nil, info)
  t.same(ep, { port = 32001, container_port = 9000, path = "/debug/vars" }, "INTROSPECTION_PORT and the seed's path")
  -- through the container's network namespace the container port is enough
  ep = inspect.endpoint("web", nil, { heartbeat = { kind = "http", port = 8090, path = "/s" } }, info, "netns")
  t.same(ep, { container_port = 8090, path = "/s" })
  local _, why = inspect.endpoint("web", nil, { heartbeat = false }, info)
  t.eq(why, "component web has no heartbeat: there is no endpoint to inspect")
  _, why = inspect.endpoint("web", { container = "c1" }, nil, info)
  t.match(why, "has no heartbeat")
  _, why = inspect.endpoint("web", nil, { heartbeat = { kind = "tcp", port = 5432 } }, info)
  t.eq(why, "component web has a tcp heartbeat, not an HTTP endpoint to inspect")
  _, why = inspect.endpoint("web", nil, nil, { Id = "c1", Config = { Env = {} } })
  t.match(why, "has no heartbeat")
  _, why = inspect.endpoint("web", nil, { heartbeat = { kind = "http", port = 7000, path = "/" } }, info)
  t.match(why, "not published on 127.0.0.1", "bound elsewhere than the loopback: not reachable, not tried")
  t.eq(inspect.loopback_port(info, 8089), 32002)
  t.eq(inspect.loopback_port(info, 1), nil)
end)

t.test("destroy: one target, and only objects labelled used-by=millwright with a stack", function()
  t.same(destroy.target({ all = true }), { all = true })
  t.same(destroy.target({ stack = "a" }), { stack = "a" })
  t.same(destroy.target({}, "b"), { stack = "b" })
  t.eq(destroy.target({ all = true, stack = "a" }), nil)
  t.eq(destroy.target({ stack = "a" }, "b"), nil)
  local a = { stack = "a" }
  t.eq(destroy.owned({ ["used-by"] = "millwright", ["mw.stack"] = "a" }, a), true)
  t.eq(destroy.owned({ ["mw.stack"] = "a" }, a), false, "no used-by")
  t.eq(destroy.owned({ ["used-by"] = "someone", ["mw.stack"] = "a" }, a), false)
  t.eq(destroy.owned({ ["used-by"] = "millwright", ["mw.stack"] = "b" }, a), false, "another stack")
  t.eq(destroy.owned(nil, a), false)
  t.eq(destroy.owned({ ["used-by"] = "millwright" }, { all = true }), false, "--all needs a stack label too")
  t.eq(destroy.owned({ ["used-by"] = "millwright", ["mw.stack"] = "z" }, { all = true }), true)
end)

t.test("installation label: one owner spells used-by=<label> for filters, labels, names and state", function()
  local owner = require "mw.owner"
  local spec = require "mw.spec"
  local st = { name = "shop" }
  t.eq(owner.name(), "millwright", "the default")
  t.same(owner.filter("shop"), { "used-by=millwright", "mw.stack=shop" })
  t.same(owner.filter(nil, "mw.config-hash", "mw.component=web"), { "used-by=millwright", "mw.stack", "mw.config-hash",
    "mw.component=web" })
  t.eq(spec.container_name(st, "web"), "shop-web", "the default installation's names do not change")
  t.eq(spec.network_name(st), "mw-shop")
  t.eq(owner.state_dir("/run/mw"), "/run/mw")
  local ok, err = pcall(function()
    assert(owner.set("ci-2"))
    t.same(owner.filter("shop", "mw.config-hash"), { "used-by=ci-2", "mw.stack=shop", "mw.config-hash" })
    t.same(owner.filter(nil), { "used-by=ci-2", "mw.stack" }, "--all: any stack, this installation only")
    t.same(spec.labels(st, { ["mw.component"] = "web" }), { ["used-by"] = "ci-2", ["mw.stack"] = "shop", ["mw.component"] = "web" })
    t.eq(owner.owns({ ["used-by"] = "ci-2" }), true)
    t.eq(owner.owns({ ["used-by"] = "millwright" }), false, "the default installation's are not ours")
    t.eq(destroy.owned({ ["used-by"] = "millwright", ["mw.stack"] = "shop" }, { stack = "shop" }), false)
    t.eq(destroy.owned({ ["used-by"] = "ci-2", ["mw.stack"] = "shop" }, { all = true }), true)
    t.eq(spec.container_name(st, "web-2"), "ci-2-shop-web-2")
    t.eq(spec.network_name(st), "mw-ci-2-shop")
    t.eq(spec.volume_name(st, "data"), "ci-2-shop_data")
    t.eq(spec.image_tag(st), "mw-ci-2-shop")
    t.eq(owner.state_dir("/run/mw"), "/run/mw/@ci-2")
    local body = spec.container({ name = "shop" }, { name = "web", env = {}, volumes = {}, ports = {} }, "img")
    t.eq(body.Labels["used-by"], "ci-2", "a container is created with the installation's label")
  end)
  owner.set(owner.DEFAULT)
  assert(ok, err)
  for _, bad in ipairs { "", "Ci", "a=b", "a,b", "-a", "a-", "a..b", string.rep("a", 41) } do
    t.eq(owner.check(bad), nil, "refused: " .. bad)
  end
  t.eq(owner.set("a=b"), nil)
  t.eq(owner.name(), "millwright", "a refused label changes nothing")
end)

t.test("log prefixes are padded to the longest name; colour only when asked", function()
  t.eq(logs.prefix("db", 6, nil, false), "db     | ")
  t.eq(logs.prefix("db", 6, nil, true), "db     | ", "stderr unmarked without a terminal")
  t.eq(logs.prefix("worker", 6, 36, false), "\27[36mworker\27[0m | ")
  t.match(logs.prefix("db", 2, 36, true), "!")
end)

t.test("usage errors and invalid stack files exit 2 before any engine is asked", function()
  t.eq(cli.main("kill"), 2)
  t.eq(cli.main("inspect"), 2)
  t.eq(cli.main("inspect", "a", "b"), 2)
  t.eq(cli.main("destroy", "--all", "--stack", "x"), 2)
  t.eq(cli.main("logs", "--tail", "many"), 2)
  t.eq(cli.main("status", "--bogus"), 2)
  t.eq(cli.main("status", "--label", "Not-Lowercase"), 2, "a bad installation label")
  t.eq(cli.main("--label", "a=b", "status"), 2, "a bad installation label before the command")
  t.eq(cli.main("status", "--label"), 2, "--label without a value")
  local dir = tmp.dir()
  local bad = dir .. "/bad.lua"
  assert(fs.write_atomic(bad, "return { components = 3 }"))
  t.eq(cli.main("status", bad), 2)
  t.eq(cli.main("destroy", bad), 2)
  t.eq(cli.main("kill", "web", bad), 2)
  t.eq(cli.main("logs", bad), 2)
  local good = dir .. "/good.lua"
  assert(fs.write_atomic(good, 'return { name = "one", components = { a = { image = "x" } } }'))
  t.eq(cli.main("status", good, "--stack", "two"), 2, "file and --stack disagree")
end)

t.test("no engine: one line that says how to keep one running, exit 1", function()
  local dir = tmp.dir()
  local good = dir .. "/stack.lua"
  assert(fs.write_atomic(good, 'return { name = "one", components = { a = { image = "x" } } }'))
  local sock = dir .. "/absent/docker.sock"
  local ok, err = pcall(function()
    for _, args in ipairs { { "status" }, { "logs", "--stack", "one" }, { "destroy", "--stack", "one" },
                            { "run", "--state-dir", dir .. "/state", good } } do
      local code, out = runner.mw(args, { env = { "DOCKER_HOST=unix://" .. sock }, timeout = 20, merge = true })
      local what = "mw " .. args[1]
      t.eq(code, 1, what .. ": " .. out)
      t.eq(select(2, out:gsub("\n", "")), 1, what .. ": one line: " .. out)
      t.ok(out:find("^mw: no Docker engine at " .. sock:gsub("%p", "%%%0") .. " %(no such file%)"), what .. ": " .. out)
      t.ok(out:find("scripts/engine.sh up", 1, true), what .. ": names scripts/engine.sh up: " .. out)
      t.ok(out:find("systemctl start docker", 1, true), what .. ": names the distribution's service: " .. out)
      t.ok(out:find("make run stops the dockerd it started", 1, true), what .. ": says why it is gone: " .. out)
    end
  end)
  assert(ok, err)
end)


t.test("exec: mw's options, then the component, then the command's words, its options included", function()
  local opts, rest, cmd = exec.parse { "-it", "--stack", "s", "web", "ls", "-l", "--help" }
  t.ok(opts.interactive and opts.tty)
  t.eq(opts.stack, "s")
  t.same(rest, { "web" })
  t.same(cmd, { "ls", "-l", "--help" })
  -- options after the component until the command; -- ends them
  opts, rest, cmd = exec.parse { "web-2", "--stack=s", "-e", "A=1", "-eB=2", "-u", "0", "-w/tmp", "--", "-x" }
  t.same(rest, { "web-2" })
  t.eq(opts.stack, "s")
  t.same(opts.env, { "A=1", "B=2" })
  t.eq(opts.user, "0")
  t.eq(opts.workdir, "/tmp")
  t.same(cmd, { "-x" })
  -- a stack file before the component
  opts, rest, cmd = exec.parse { "stack.lua", "web", "sh", "-c", "echo hi" }
  t.eq(opts.stack, nil)
  t.same(rest, { "stack.lua", "web" })
  t.same(cmd, { "sh", "-c", "echo hi" })
  t.same({ exec.parse { "-x", "web", "ls" } }, { nil, "unknown option -x" })
  t.same({ exec.parse { "-ix", "web", "ls" } }, { nil, "unknown option -x in -ix" })
  t.same({ exec.parse { "--", "web", "ls" } }, { nil, "give the component before --" })
  t.same({ exec.parse { "web", "-e" } }, { nil, "option -e needs a value" })
  -- what the cli leaves alone: the command's words
  t.eq(exec.own { "-i", "web", "ls", "--help", "--label", "x" }, 2)
  t.eq(exec.own { "--label", "x", "web", "--", "ls" }, 4)
end)

t.test("exec: usage errors exit 2 and mw's own failures 125, one line each, before any exec", function()
  t.eq(cli.main("exec"), 2, "no component")
  t.eq(cli.main("exec", "web"), 2, "no command")
  t.eq(cli.main("exec", "web", "--"), 2, "no command after --")
  t.eq(cli.main("exec", "-q", "web", "ls"), 2, "unknown option")
  local dir = tmp.dir()
  local sock = dir .. "/absent/docker.sock"
  local ok, err = pcall(function()
    -- --help and --label after the component are the command's: no help, no label check
    local code, out = runner.mw({ "exec", "web", "ls", "--help", "--label", "Not-Lowercase" },
      { env = { "DOCKER_HOST=unix://" .. sock }, timeout = 20, merge = true })
    t.eq(code, 125, out)
    t.eq(select(2, out:gsub("\n", "")), 1, "one line: " .. out)
    t.match(out, "^mw: no Docker engine at ")
    code, out = runner.mw({ "help", "exec" }, { timeout = 20 })
    t.eq(code, 0)
    t.match(out, "^usage: mw %[%-%-label NAME%] exec %[%-i%] %[%-t%]")
    t.ok(not out:find("destroy", 1, true), "only exec's lines: " .. out)
  end)
    assert(ok, err)
end)

-- `mw policy preview <file> <component> <n>` -> exit code, output
local function preview(file, comp, n)
  return runner.mw({ "policy", "preview", file, comp, n }, { timeout = 20, merge = true })
end

t.test("policy preview: the first restart at once, the backoff from the second (issue 17)", function()
  local dir = tmp.dir()
  local file = dir .. "/stack.lua"
  assert(fs.write_atomic(file, [[
local policy = require "mw.policy"
return { name = "pv", components = {
  web = { image = "x" },
  docker = { image = "x", restart = policy.always { first_delay = "100ms" } },
} }
]], 420))
  local code, out = preview(file, "web", "3")
  t.eq(code, 0, out)
  t.match(out, "first restart at once, then exponential%(100ms")
  t.match(out, "\n1 +at once +restart +%+0ms\n")
  t.match(out, "\n2 +100ms +restart +%+100ms\n")
  t.match(out, "attempt 1 is also every failure after 10s or more of running")
  code, out = preview(file, "docker", "2")
  t.eq(code, 0, out)
  t.match(out, "\n1 +100ms +restart ")
end)

t.test("policy preview: a component with a standby is promoted first; a function's promote without one restarts", function()
  local dir = tmp.dir()
  local file = dir .. "/stack.lua"
  assert(fs.write_atomic(file, [[
return { name = "pv", components = {
  web = { image = "x", heartbeat = true, standby = true },
  fn = { image = "x", restart = function(f) if f.restarts >= 2 then return "give_up" end return "promote", "1s" end },
} }
]], 420))
  local code, out = preview(file, "web", "3")
  t.eq(code, 0, out)
  t.match(out, "warm standby: a frozen one is ready at the first failure")
  t.match(out, "\n1 +at once +promote +%+0ms +the frozen standby takes its place\n")
  t.match(out, "\n2 +100ms +restart +%+100ms\n")
  t.match(out, "promoted again")
  code, out = preview(file, "fn", "5")
  t.eq(code, 0, out)
  t.ok(not out:find("warm standby", 1, true), out)
  t.match(out, "\n1 +1%.0s +promote +%+1%.0s +no standby %(the component has none%): restarts in place\n")
  t.match(out, "\n3 +0ms +give_up ")
end)

os.exit(t.run())
