-- Components as groups of instances: scale by editing the file, rolling replacement, autoscale.
local t = require "t"
local core = require "mw.core"
local fs = require "mw.fs"
local http = require "mw.http"
local cjson = require "cjson"
local E = require "engine"

local function write(path, text) assert(fs.write_atomic(path, text, 420)) end

local STACK = [[
local HB = { interval = "200ms", timeout = "1s", misses = 3, grace = "10s" }
return { name = "NAME", components = {
  web = { image = "IMAGE", heartbeat = HB, scale = SCALE, env = { V = "VERSION" },
          command = { "sh", "-c", "CMD" } },
  other = { image = "IMAGE", command = { "sleep", "1000" } },
} }
]]
local SERVE = "mkdir -p /w/debug && echo '{}' > /w/debug/vars && exec httpd -f -p 8089 -h /w"

local function render(scale, version, cmd, name)
  local src = STACK:gsub("SCALE", tostring(scale)):gsub("VERSION", version):gsub("CMD", cmd or SERVE)
  return name and E.render(src, name) or src
end

local function running(stack, comp)
  local by = E.containers(stack)
  local n, ids = 0, {}
  for _, x in ipairs(by[comp] or {}) do
    if x.State == "running" then n = n + 1; ids[tonumber(x.Labels["mw.instance"])] = x.Id end
  end
  return n, ids
end

local function status(dir, stack)
  local text = fs.read(dir .. "/state/" .. stack .. "/status.json")
  local ok, doc = pcall(cjson.decode, text or "")
  return ok and doc or nil
end

t.test("scale 1 -> 3 -> 1 by editing the file; others untouched; highest numbers go first", function()
  local file, stack, dir = E.stack("scale", render(1, "1"))
  local h = E.mw({ "run", "--log-format", "json", "--state-dir", dir .. "/state", file })
  h.wait_event({ event = "healthy", component = "web" }, 60)
  local _, first = running(stack, "web")
  local other = E.wait_running(stack, { "other" }).other[1].Id
  write(file, render(3, "1", nil, stack))
  h.wait_event({ event = "healthy", component = "web-2" }, 60)
  h.wait_event({ event = "healthy", component = "web-3" }, 60)
  local n, ids = running(stack, "web")
  t.eq(n, 3)
  t.eq(ids[1], first[1], "instance 1 untouched")
  local info = assert(E.engine():inspect(ids[3]))
  t.eq(info.Name, "/" .. stack .. "-web-3")
  t.eq(info.Config.Labels["mw.instance"], "3")
  -- the status file: one row per instance and a summary per component
  t.wait_for(function()
    local st = status(dir, stack)
    if not st or #st.components ~= 4 then return false end
    for _, g in ipairs(st.groups) do
      if g.name == "web" then return g.desired == 3 and g.running == 3 and g.healthy == 3 end
    end
  end, 20, "status shows 3 of 3 healthy")
  local mark = #h.events()
  write(file, render(1, "1", nil, stack))
  local _, i2 = h.wait_event({ event = "removed", component = "web-2" }, 30, mark)
  local _, i3 = h.wait_event({ event = "removed", component = "web-3" }, 30, mark)
  t.ok(i3 < i2, "web-3 went before web-2")
  t.wait_for(function() return running(stack, "web") == 1 end, 20, "one instance left")
  local _, after = running(stack, "web")
  t.eq(after[1], first[1], "instance 1 still the same container")
  t.eq(E.containers(stack).other[1].Id, other, "other untouched")
  h.stop()
end)

t.test("a rolling env change of 3 instances keeps at least 2 heartbeats answering", function()
  local file, stack, dir = E.stack("roll", render(3, "1"))
  -- the published path: the watcher below asks each instance through its published port
  local h = E.mw({ "run", "--log-format", "json", "--state-dir", dir .. "/state", file },
    { env = { "MW_HEARTBEAT_PATH=published" } })
  for _, k in ipairs { "web", "web-2", "web-3" } do h.wait_event({ event = "healthy", component = k }, 60) end
  local _, before = running(stack, "web")
  local mark = #h.events()
  write(file, render(3, "2", nil, stack))
  -- probe every instance the status file lists, until the roll is done
  local min_ok, samples = 3, 0
  local done = false
  local watcher = core.spawn(function()
    while not done do
      -- every running instance the engine lists, through its port published on 127.0.0.1 (by
      -- its network holder, mw.holder, which has the instance's key as its mw.holder label)
      local list = E.engine():list { label = { "used-by=millwright", "mw.stack=" .. stack } }
      local ok, tasks = 0, {}
      for _, x in ipairs(list or {}) do
        local labels = x.Labels or {}
        local web = labels["mw.component"] == "web" or tostring(labels["mw.holder"]):match("^web%-?%d*$")
        for _, p in ipairs(web and x.Ports or {}) do
          if p.PrivatePort == 8089 and p.IP == "127.0.0.1" and p.PublicPort then
            tasks[#tasks + 1] = core.spawn(function()
              -- a generous timeout: an answer slowed by a loaded machine is still an answer
              local res = http.request { url = "http://127.0.0.1:" .. p.PublicPort .. "/debug/vars", timeout = 5 }
              if res and res.status == 200 then ok = ok + 1 end
            end)
          end
        end
      end
      for _, tk in ipairs(tasks) do core.join(tk) end
      -- a list call the engine did not answer is no sample (it counted as "none answer")
      if list then
        samples = samples + 1
        min_ok = math.min(min_ok, ok)
      end
      core.sleep(0.05)
    end
  end)
  h.wait_event({ event = "rolled", component = "web" }, 120, mark)
  done = true
  core.join(watcher)
  t.ok(samples > 10, "sampled " .. samples .. " times")
  t.ok(min_ok >= 2, "at least 2 answered at every sample (min " .. min_ok .. ")")
  local n, after
  t.wait_for(function() n, after = running(stack, "web") return n == 3 end, 30, "three instances running")
  for i = 1, 3 do t.ok(after[i] ~= before[i], "instance " .. i .. " replaced") end
  local info = assert(E.engine():inspect(after[2]))
  local v2 = false
  for _, kv in ipairs(info.Config.Env) do if kv == "V=2" then v2 = true end end
  t.ok(v2, "new env")
  h.stop()
end)

t.test("a roll whose new instance never gets healthy stops, old instances serving", function()
  local file, stack, dir = E.stack("badroll", render(3, "1"))
  local h = E.mw({ "run", "--log-format", "json", "--state-dir", dir .. "/state", file })
  for _, k in ipairs { "web", "web-2", "web-3" } do h.wait_event({ event = "healthy", component = k }, 60) end
  local _, before = running(stack, "web")
  local mark = #h.events()
  -- the new version never serves its heartbeat; rollout waits at most 2 s for it
  write(file, (render(3, "2", "sleep 1000", stack):gsub("scale = 3,", 'scale = 3, rollout = { timeout = "2s" },')))
  local ev = h.wait_event({ event = "roll_stopped", component = "web" }, 60, mark)
  t.match(ev.msg, "keep serving")
  -- the engine's list may still show an old instance mid-restart (a loaded machine can miss a
  -- heartbeat): wait for the three, then check they are the old containers
  local n, after
  t.wait_for(function() n, after = running(stack, "web") return n == 3 end, 30, "three instances running")
  for i = 1, 3 do t.eq(after[i], before[i], "instance " .. i .. " is the old one") end
  h.stop()
end)

t.test("autoscale follows a counter the test controls, within min and max", function()
  local d = E.tmpdir()
  assert(fs.mkdirp(d .. "/www/debug", 493))
  write(d .. "/www/debug/vars", '{"queue":0}')
  local file, stack, dir = E.stack("auto", [[
return { name = "NAME", components = {
  web = { image = "IMAGE", heartbeat = { interval = "200ms", grace = "10s" },
          volumes = { "WWW:/w:ro" },
          command = { "httpd", "-f", "-p", "8089", "-h", "/w" },
          autoscale = { min = 1, max = 3, every = "300ms",
                        decide = function(s)
                          local q = s.instances[1] and s.instances[1].json and s.instances[1].json.queue
                          return q or s.desired
                        end } },
} }
]])
  write(file, (assert(fs.read(file)):gsub("WWW", d .. "/www")))
  local h = E.mw({ "run", "--log-format", "json", "--state-dir", dir .. "/state", file })
  h.wait_event({ event = "healthy", component = "web" }, 60)
  write(d .. "/www/debug/vars", '{"queue":7}')         -- more than max
  h.wait_event({ event = "autoscale", component = "web", to = 3 }, 30)
  h.wait_event({ event = "healthy", component = "web-3" }, 60)
  t.wait_for(function() return running(stack, "web") == 3 end, 30, "three running")
  write(d .. "/www/debug/vars", '{"queue":0}')         -- less than min
  h.wait_event({ event = "autoscale", component = "web", to = 1 }, 30)
  t.wait_for(function() return running(stack, "web") == 1 end, 30, "back to one")
  for _, ev in ipairs(h.events()) do
    if ev.event == "autoscale" then t.ok(ev.to >= 1 and ev.to <= 3, "within bounds: " .. ev.to) end
  end
  h.stop()
end)

t.test("a decide function that errors leaves the scale as it is", function()
  local file, stack = E.stack("autobad", [[
return { name = "NAME", components = {
  web = { image = "IMAGE", command = { "sleep", "1000" }, scale = 2,
          autoscale = { min = 1, max = 4, every = "200ms", decide = function(s) error("nope") end } },
} }
]])
  local h = E.mw({ "run", "--log-format", "json", file })
  h.wait_event({ event = "started", component = "web" }, 60)
  h.wait_event({ event = "started", component = "web-2" }, 60)
  h.wait_event({ event = "autoscale_error", component = "web" }, 30)
  t.eq(running(stack, "web"), 2)
  h.stop()
end)

os.exit(E.run(t))
