-- Hot reload: edit stack.lua (or a file it requires) while mw runs.
local t = require "t"
local fs = require "mw.fs"
local cjson = require "cjson"
local E = require "engine"

local e = E.engine()

local function write(path, text)
  -- as an editor does it: a new file renamed over the old one
  assert(fs.write_atomic(path, text, 420))
end

local function edit(path, from, to)
  local text = assert(fs.read(path))
  local n
  text, n = text:gsub(from, to)
  assert(n > 0, "pattern not found: " .. from)
  return text
end

local function count(h, want, from)
  local n = 0
  for i, ev in ipairs(h.events()) do
    if i > (from or 0) then
      local ok = true
      for k, v in pairs(want) do if ev[k] ~= v then ok = false end end
      if ok then n = n + 1 end
    end
  end
  return n
end

local BASE = [[
local policy = require "mw.policy"
local backoff = require "mw.backoff"
local HB = { interval = "200ms", timeout = "1s", misses = 3, grace = "10s" }
local function httpd(tag) return { "sh", "-c", "mkdir -p /w/debug && echo '{}' > /w/debug/vars && exec httpd -f -p 8089 -h /w" } end
return { name = "NAME", components = {
  web = { image = "IMAGE", command = httpd(), heartbeat = HB, env = { VERSION = "1" } },
  other = { image = "IMAGE", command = httpd(), heartbeat = HB },
  crash = { image = "IMAGE", command = { "sh", "-c", "sleep 0.5; exit 1" },
            restart = policy.on_failure { backoff = backoff.constant { delay = "DELAY" } } },
} }
]]

local function start(short, delay)
  local file, stack, dir = E.stack(short, (BASE:gsub("DELAY", delay or "300ms")))
  local h = E.mw({ "run", "--log-format", "json", "--state-dir", dir .. "/state", file })
  h.wait_event({ event = "healthy", component = "web" }, 60)
  h.wait_event({ event = "healthy", component = "other" }, 60)
  return file, stack, dir, h
end

local function ids(stack)
  local out = {}
  for k, l in pairs(E.containers(stack)) do out[k] = l[1].Id end
  return out
end

t.test("editing only the policy touches no container; the next failure follows it", function()
  local file, stack, _, h = start("policy", "300ms")
  h.wait_event({ event = "failed", component = "crash", delay = 0.3 }, 30)
  local before = ids(stack)
  local mark = #h.events()
  write(file, edit(file, '"300ms"', '"1200ms"'))
  h.wait_event({ event = "reloaded" }, 10, mark)
  local ev = h.wait_event({ event = "failed", component = "crash", delay = 1.2 }, 30, mark)
  t.ok(ev, "a failure after the edit uses the new delay")
  local after = ids(stack)
  t.eq(after.web, before.web); t.eq(after.other, before.other); t.eq(after.crash, before.crash)
  h.stop()
end)

t.test("a pending long backoff shortened by an edit fires at the new time", function()
  local file, _, _, h = start("pending", "60s")
  local failed = h.wait_event({ event = "failed", component = "crash", delay = 60 }, 30)
  local mark = #h.events()
  write(file, edit(file, '"60s"', '"1s"'))
  local rel = h.wait_event({ event = "reloaded" }, 10, mark)
  local r = h.wait_event({ event = "restarting", component = "crash" }, 10, mark)
  local fired = r.time - failed.time
  -- at the new time (or at the reload, if that came later), not at the old 60 s; how late a
  -- loaded machine may be is no part of the claim
  t.ok(fired >= 0.995 and fired < math.max(1.0, rel.time - failed.time) + 5,
    string.format("fired %.2fs after the failure (reload at +%.2fs)", fired, rel.time - failed.time))
  h.stop()
end)

t.test("a syntax error keeps the old config and is reported; fixing the file reloads", function()
  local file, stack, _, h = start("syntax", "300ms")
  local before = ids(stack)
  local good = assert(fs.read(file))
  local mark = #h.events()
  write(file, good .. "\nthis is not lua(\n")
  local ev = h.wait_event({ event = "reload_failed" }, 10, mark)
  t.match(ev.msg, "stack.lua:%d+:")
  t.eq(ids(stack).web, before.web)
  mark = #h.events()
  write(file, edit(file, 'VERSION = "1"', 'VERSION = "1"'))   -- the good text again
  write(file, good)
  h.wait_event({ event = "reloaded" }, 10, mark)
  h.stop()
end)

t.test("a changed env replaces only that container, start-first, with no failed heartbeat", function()
  local file, stack, dir, h = start("env", "300ms")
  local before = ids(stack)
  -- web's row from a status file written after `since` (mw's wall clock, as events carry it):
  -- the file is rewritten 20 ms after a change, so one read at once may predate the last probes
  local function web_row(since)
    local row = t.wait_for(function()
      local text = fs.read(dir .. "/state/" .. stack .. "/status.json")
      local ok, st = pcall(cjson.decode, text or "")
      if not ok or type(st) ~= "table" or (st.updated or 0) <= since then return nil end
      for _, c in ipairs(st.components) do if c.name == "web" then return c end end
    end, 15, "a status file written after " .. since)
    return row
  end
  local last = 0
  for _, ev in ipairs(h.events()) do if ev.event == "healthy" then last = math.max(last, ev.time) end end
  -- start-up may have had refused probes (the service not listening yet): counted before
  local probes_before = web_row(last).failed_probes
  local mark = #h.events()
  write(file, edit(file, 'VERSION = "1"', 'VERSION = "2"'))
  local rep = h.wait_event({ event = "replace", component = "web" }, 30, mark)
  t.match(rep.msg, "start%-first")
  local after = ids(stack)
  t.ok(after.web ~= before.web, "web replaced")
  t.eq(after.other, before.other, "other untouched")
  local info = assert(e:inspect(after.web))
  local found = false
  for _, kv in ipairs(info.Config.Env) do if kv == "VERSION=2" then found = true end end
  t.ok(found, "new env in the new container")
  t.eq(info.Name, "/" .. stack .. "-web", "the new container took the component's name")
  t.eq(count(h, { event = "failed", component = "web" }, mark), 0, "no failure during the swap")
  local row = web_row(rep.time)
  t.eq(row.failed_probes - probes_before, 0, "no failed heartbeat during the swap (" .. tostring(row.last_probe_error) .. ")")
  h.stop()
end)

t.test("adding and removing a component", function()
  local file, stack, _, h = start("addrm", "300ms")
  local mark = #h.events()
  local text = edit(file, "  other = {", '  extra = { image = "' .. E.image() .. '", command = { "sleep", "1000" } },\n  other = {')
  text = text:gsub("  crash = {.-} },\n", "", 1)
  write(file, text)
  h.wait_event({ event = "started", component = "extra" }, 30, mark)
  h.wait_event({ event = "removed", component = "crash" }, 30, mark)
  t.wait_for(function()
    local by = E.containers(stack)
    return by.extra and not by.crash
  end, 10, "extra present, crash gone")
  h.stop()
end)

t.test("a required helper module edited triggers a reload; SIGHUP reloads", function()
  local file, stack, dir = E.stack("helper", [[
local conf = require "conf"
return { name = "NAME", components = {
  web = { image = "IMAGE", command = { "sleep", "1000" }, env = { LEVEL = conf.level } },
} }
]])
  write(dir .. "/conf.lua", 'return { level = "1" }\n')
  local h = E.mw({ "run", "--log-format", "json", "--state-dir", dir .. "/state", file })
  h.wait_event({ event = "started", component = "web" }, 60)
  local mark = #h.events()
  write(dir .. "/conf.lua", 'return { level = "2" }\n')
  h.wait_event({ event = "reloaded" }, 10, mark)
  h.wait_event({ event = "replace", component = "web" }, 30, mark)
  local info = assert(e:inspect(E.containers(stack).web[1].Id))
  local found = false
  for _, kv in ipairs(info.Config.Env) do if kv == "LEVEL=2" then found = true end end
  t.ok(found, "the helper's new value reached the container")
  mark = #h.events()
  h.p:kill("HUP")
  local ev = h.wait_event({ event = "reloaded" }, 10, mark)
  t.match(ev.msg, "SIGHUP")
  h.stop()
end)

os.exit(E.run(t))
