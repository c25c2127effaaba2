-- `mw run`: connect, take the stack's place in line, supervise, reload on change, keep the
-- status file current, and leave the containers running on exit.
local core = require "mw.core"
local fs = require "mw.fs"
local signal = require "mw.signal"
local cjson = require "cjson"
local log = require "mw.log"
local docker = require "mw.docker"
local queue = require "mw.queue"
local coord = require "mw.coord"
local owner = require "mw.owner"
local stack = require "mw.stack"
local supervisor = require "mw.supervisor"
local lookup = require "mw.lookup"
local api = require "mw.api" -- api
local notify = require "mw.notify" -- api
local alerts = require "mw.alerts"

local M = {}

local USAGE = 2

local DEBOUNCE = 0.01       -- quiet time before a stack file that did not load is tried again
local STATUS_EVERY = 5      -- the status file is rewritten at least this often

-- A mailbox: the main loop's one place to wait for signals, file changes and step-downs.
local function mailbox()
  local box = { queued = {}, cond = core.cond() }
  function box.put(msg)
    box.queued[#box.queued + 1] = msg
    box.cond:notify()
  end
  function box.get()
    while #box.queued == 0 do box.cond:wait() end
    return table.remove(box.queued, 1)
  end
  -- Removes the queued messages pred() picks -> whether there were any.
  function box.drop(pred)
    local any = false
    for i = #box.queued, 1, -1 do
      if pred(box.queued[i]) then table.remove(box.queued, i) any = true end
    end
    return any
  end
  return box
end

local function dirname(p) return p:match("^(.*)/[^/]*$") or "." end
local function basename(p) return p:match("([^/]*)$") end

-- Watches the stack file and every Lua file it required: their directories, so that editors
-- which replace a file by renaming a new one over it are seen too.
local function watch_files(ctx, files)
  for _, entry in pairs(ctx.watches or {}) do entry.closed = true; entry.watch:close() end
  ctx.watches = {}
  local by_dir = {}
  for _, file in ipairs(files) do
    local dir = dirname(file)
    by_dir[dir] = by_dir[dir] or {}
    by_dir[dir][basename(file)] = true
  end
  for dir, names in pairs(by_dir) do
    local watcher, err = fs.watch(dir)
    if not watcher then
      log.warn(nil, "watch", "cannot watch " .. dir .. " for changes: " .. tostring(err))
    else
      local entry = { watch = watcher }
      ctx.watches[dir] = entry
      core.spawn(function()
        while not entry.closed do
          local changes = watcher:wait()
          if not changes then break end
          for _, change in ipairs(changes) do
            if names[change.name] then ctx.box.put { kind = "changed", file = dir .. "/" .. change.name, at = core.now() } break end
          end
        end
      end, "watch " .. dir)
    end
  end
end

local function write_status(ctx)
  local snap = ctx.sup:snapshot()
  snap.updated = core.time()
  snap.state_dir = ctx.state_dir
  snap.coord = ctx.coord
  -- no fsync: the file describes this live process (a crash makes it stale anyway), and an
  -- fsync here held the whole loop for 1-70 ms at every change while the stack came up
  local ok, err = fs.write_atomic(ctx.status_file, cjson.encode(snap), 384, false)
  if not ok and not ctx.status_warned then
    ctx.status_warned = true
    log.warn(nil, "status", "cannot write " .. ctx.status_file .. ": " .. tostring(err))
  end
end

-- Loads the stack file again and applies it; one that does not load leaves the running one.
-- With opts.tentative a file that does not load is only reported (nil) to the caller, who
-- may try again once the writes have stopped.
local function reload(ctx, why, opts)
  local t0 = core.now()
  local def, err, required = stack.load(ctx.file, { profiles = ctx.stack.profiles })
  if not def and opts and opts.tentative then return nil end
  if not def then
    log.warn(nil, "reload_failed", "reload failed, keeping the running configuration: " .. tostring(err))
    local files = { ctx.stack.file }
    for _, file in ipairs(required or {}) do files[#files + 1] = file end
    for _, file in ipairs(ctx.stack.required or {}) do files[#files + 1] = file end
    watch_files(ctx, files)
    if ctx.on_reload then ctx.on_reload(false, err) end
    return false
  end
  if def.name ~= ctx.stack.name then
    log.warn(nil, "reload_failed", string.format("reload failed: the stack's name changed from %s to %s; restart mw to switch stacks",
      ctx.stack.name, def.name))
    return false
  end
  local summary = ctx.sup:apply(def)
  ctx.stack = def
  local files = { def.file }
  for _, file in ipairs(def.required or {}) do files[#files + 1] = file end
  watch_files(ctx, files)
  log.info(nil, "reloaded", string.format("reloaded in %d ms (%s): %s", math.floor((core.now() - t0) * 1000 + 0.5),
    why, summary), { ms = (core.now() - t0) * 1000 })
  if ctx.on_reload then ctx.on_reload(true) end
  return true
end
M.reload = reload

-- Waits for this mw's turn -> "active" | "stop" (a signal, or the line is gone).
local function await_turn(ctx, place, coordinated)
  local box, def = ctx.box, ctx.stack
  local waiting = core.spawn(function()
    local ok, werr = place:wait(function(info)
      local ahead = info.ahead and string.format(", %d ahead", info.ahead) or ""
      log.info(nil, "waiting", string.format("another mw runs stack %s: waiting for pid %s on %s (since %s)%s",
        def.name, tostring(info.pid), tostring(info.host), os.date("%H:%M:%S", math.floor(info.since or 0)), ahead),
        { pid = info.pid, host = info.host, ahead = info.ahead })
    end)
    box.put { kind = ok and "active" or "lost", err = werr }
  end, "queue")
  while true do
    local msg = box.get()
    if msg.kind == "active" then break end
    if msg.kind == "lost" then
      log.info(nil, "stop", "left the queue (" .. tostring(msg.err) .. ")")
      return "stop"
    end
    if msg.kind == "signal" and msg.name ~= "HUP" then
      core.cancel(waiting)
      log.info(nil, "stop", "stopped while waiting in line (signal " .. msg.name .. ")")
      return "stop"
    end
  end
  core.spawn(function()
    if coordinated then
      local why = place:lost()
      if why then box.put { kind = "lost_lead", why = why } end
    else
      local replaced = place:replaced()
      if replaced then box.put { kind = "replaced" } end
    end
  end, "replaced")
  return "active"
end

-- Supervises the stack while this mw is the active one -> exit status, and how it ended:
-- "stop" (a signal, replaced, a failure) or "lost" (the etcd lease: wait for a turn again).
local function supervise(ctx, place, listen, systemd)
  local box, engine, def = ctx.box, ctx.engine, ctx.stack
  if ctx.file and ctx.turns then
    -- a later turn: the file may have changed while we waited
    local fresh = stack.load(ctx.file, { profiles = def.profiles })
    if fresh and fresh.name == def.name then def = fresh; ctx.stack = fresh end
  end
  ctx.turns = (ctx.turns or 0) + 1
  local status_cond = core.cond()
  local sup = supervisor.new { engine = engine, stack = def, on_change = function() status_cond:notify() end }
  sup.pull_override = ctx.pull       -- mw run --pull: every component's pull policy, for this run
  ctx.sup = sup
  if place.info then ctx.coord = { url = place.cfg.url, host = place.info.host, pid = place.info.pid, since = place.info.since } end
  local api_srv, aerr = api.start(ctx, { listen = listen }) -- api
  if not api_srv then io.stderr:write("mw: ", aerr, "\n") return 1 end -- api
  sup.on_beat = function(key, ok, latency) api_srv:on_beat(key, ok, latency) end -- api: for Sup:good and Sup:miss to call
  ctx.alerts = alerts.start(ctx) -- on_event hooks: after the API, so it closes first (log.hook chain)
  log.info(nil, "start", string.format("stack %s: %d component%s, engine %s (API %s)", def.name, #def.order,
    #def.order == 1 and "" or "s", tostring(engine.version), tostring(engine.api)))
  local ok, serr = sup:start()
  if not ok then
    io.stderr:write("mw: ", tostring(serr), "\n")
    ctx.alerts:close()
    api_srv:close() -- api
    sup:stop()
    return 1
  end
  if systemd and ctx.turns == 1 then systemd:supervise(sup) end -- api: READY=1 once the stack is up
  -- the whole stack comes up, so what `mw stop` stopped on the engine is no longer marked
  require("mw.cmd_stop").clear_marks(ctx.state_dir, def.name)
  local status_task = core.spawn(function()
    while true do
      write_status(ctx)
      status_cond:wait(STATUS_EVERY)
      core.sleep(0.02)          -- coalesce a burst of changes into one write
    end
  end, "status")
  local files = { def.file }
  for _, file in ipairs(def.required or {}) do files[#files + 1] = file end
  watch_files(ctx, files)

  local how = "stop"
  while true do
    local msg = box.get()
    if msg.kind == "changed" then
      -- at the first change, not after a quiet period: an editor that renames a new file over
      -- the old one gives a complete file at once. One written in place may be caught half
      -- written, which (a Lua table cut short) does not load: then wait until the writes stop
      -- and try once more before reporting. Changes seen before the read are covered by it;
      -- any later one reloads again.
      local read_at = core.now()
      if reload(ctx, "file changed", { tentative = true }) == nil then
        repeat
          core.sleep(DEBOUNCE)
        until not box.drop(function(queued) return queued.kind == "changed" end)
        read_at = core.now()
        reload(ctx, "file changed")
      end
      box.drop(function(queued) return queued.kind == "changed" and queued.at < read_at end)
    elseif msg.kind == "signal" and msg.name == "HUP" then
      reload(ctx, "SIGHUP")
    elseif msg.kind == "reload" then -- api: POST /api/reload waits for the result
      msg.reply(reload(ctx, msg.why)) -- api
    elseif msg.kind == "down" then -- api: POST /api/down stopped every component; supervision ends
      log.info(nil, "down", "mw down: every component stopped; supervision ends")
      sup:stop()
      msg.reply(true)
    elseif msg.kind == "leave" then -- api: the answer to POST /api/down is on its way
      break
    elseif msg.kind == "signal" then
      log.info(nil, "stop", "stopping supervision (signal " .. tostring(msg.name) .. "); containers keep running")
      break
    elseif msg.kind == "replaced" then
      log.info(nil, "replaced", "another mw took over this stack (--force); stepping down, containers keep running")
      break
    elseif msg.kind == "lost_lead" then
      -- every engine write is already refused (the fence closed first); stop asking
      log.warn(nil, "coord_lost", "no longer the active mw for stack " .. def.name .. " (" .. tostring(msg.why)
        .. "); stepping down to waiting, containers keep running", { why = msg.why })
      how = "lost"
      break
    end
  end
  if systemd and how ~= "lost" then systemd:close("stopping supervision; containers keep running") end -- api
  ctx.alerts:close()
  api_srv:close() -- api
  sup:stop()
  core.cancel(status_task)
  for _, entry in pairs(ctx.watches or {}) do entry.closed = true; entry.watch:close() end
  ctx.watches = nil
  -- the status file is ours to remove only while it still says so (a successor rewrites it)
  local current = fs.read(ctx.status_file)
  local decoded, doc = pcall(cjson.decode, current or "")
  if decoded and type(doc) == "table" and doc.pid == core.pid() then fs.remove(ctx.status_file) end
  return 0, how
end

-- opts: stack (loaded), file, force, state_dir, listen -> exit status.
function M.run(opts)
  -- Supervision makes short-lived garbage at every heartbeat (an answer, a probe's task) beside
  -- a heap that lives as long as mw does: Lua 5.4's generational collector visits mostly
  -- the young objects (Lua 5.4 manual, section 2.5.2), where the incremental one walks
  -- the whole heap each cycle.
  collectgarbage("generational")
  local def = opts.stack
  local listen, lerr = api.parse_listen(opts.listen) -- api: a non-loopback address is refused before anything
  if lerr then io.stderr:write("mw: ", lerr, "\n") return 2 end -- api
  local engine, err, code = docker.connect()
  if not engine then
    io.stderr:write("mw: ", docker.explain(err, code), "\n")
    return 1
  end
  local box = mailbox()
  local sigs = signal.watch { "INT", "TERM", "HUP" }
  local ctx = { engine = engine, stack = def, file = opts.file, box = box, pull = opts.pull }
  local systemd = notify.open() -- api: systemd's notify socket (watchdog pings start now), nil outside systemd
  core.spawn(function()
    while true do
      local name = sigs:wait()
      if not name then return end
      box.put { kind = "signal", name = name }
    end
  end, "signals")

  -- one active mw per stack: wait in line (or cut in with --force); with --coord, across
  -- hosts through an etcd election, whose lease fences every engine write (mw.coord)
  ctx.state_dir = owner.state_dir(opts.state_dir or queue.default_dir())
  local place, perr
  if opts.coord then
    place = coord.enter { cfg = opts.coord, stack = def.name, force = opts.force }
    engine.fence = place.fence
  else
    place, perr = queue.enter { dir = ctx.state_dir, stack = def.name, force = opts.force }
  end
  if not place then
    io.stderr:write("mw: cannot join the queue for stack ", def.name, ": ", tostring(perr), "\n")
    sigs:close()
    return 1
  end
  ctx.status_file = ctx.state_dir .. "/" .. def.name .. "/status.json"
  if opts.coord then fs.mkdirp(ctx.state_dir .. "/" .. def.name, tonumber("700", 8)) end
  local rc
  while true do
    local turn = await_turn(ctx, place, opts.coord)
    if turn ~= "active" then
      place:leave()
      sigs:close()
      return 0
    end
    local how
    rc, how = supervise(ctx, place, listen, systemd)
    if how ~= "lost" then break end
  end
  place:leave()
  sigs:close()
  return rc
end

-- mw run [stack.lua] [--force] [--log-format text|json] [--state-dir DIR] [--listen ADDR]
--        [--coord etcd://...] [--coord-ttl N] [--coord-ca F] [--coord-cert F --coord-key F] [--coord-user U]
function M.main(args, cli)
  local profiles, perr = lookup.take_profiles(args)
  if not profiles then cli.say(perr) return USAGE end
  local opts, rest = cli.parse(args, { force = true, ["log-format"] = "value", ["state-dir"] = "value", listen = "value",
    pull = "value",
    coord = "value", ["coord-ttl"] = "value", ["coord-ca"] = "value", ["coord-cert"] = "value", ["coord-key"] = "value",
    ["coord-user"] = "value" })
  if not opts then cli.say(rest) return USAGE end
  if opts.pull and opts.pull ~= "always" and opts.pull ~= "missing" and opts.pull ~= "never" then
    cli.say("--pull must be always, missing or never") return USAGE
  end
  if opts.log_format then
    if opts.log_format ~= "text" and opts.log_format ~= "json" then
      cli.say("--log-format must be text or json") return USAGE
    end
    log.format = opts.log_format
  end
  local cfg, cerr = coord.config(opts)
  if cfg == nil then cli.say(cerr) return USAGE end
  if not cfg and (opts.coord_ttl or opts.coord_ca or opts.coord_cert or opts.coord_key or opts.coord_user) then
    cli.say("--coord-ttl, --coord-ca, --coord-cert, --coord-key and --coord-user need --coord (or MW_COORD)") return USAGE
  end
  local file = lookup.first_file(rest)
  if #rest > 0 then cli.say("run: unexpected argument " .. rest[1]) return USAGE end
  local def = lookup.load_file(file, profiles)
  if not def then return USAGE end
  return M.run { stack = def, file = file, force = opts.force, state_dir = opts.state_dir, listen = opts.listen,
                 pull = opts.pull, coord = cfg or nil }
end

return M
