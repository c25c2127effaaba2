-- The service keys of a compose file, each turned into stack fields by its handler (the keys
-- mw.fields names under `compose`), or kept as a comment saying why mw has no equivalent.
local yaml      = require "mw.yaml"
local duration  = require "mw.duration"
local owner     = require "mw.owner"
local paths     = require "mw.path"
local yamlvalue = require "mw.yamlvalue"
local luawriter = require "mw.luawriter"
local dotenv    = require "mw.dotenv"
local importcx  = require "mw.importcx"
local attach    = require "mw.compose_attach"

local compose = {}

local NULL = yaml.null
local join = paths.join
local is_list, is_map = yamlvalue.is_list, yamlvalue.is_map
local sorted_keys, str_of = yamlvalue.sorted_keys, yamlvalue.str_of
local bool_of, compact = yamlvalue.bool_of, yamlvalue.compact
local raw, ordered, quote = luawriter.raw, luawriter.ordered, luawriter.quote
local lua_key, render = luawriter.key, luawriter.render
local Fatal, fatal, warn, lookup = importcx.Fatal, importcx.fatal, importcx.warn, importcx.lookup
local note, unsupported, partial, set = importcx.note, importcx.unsupported, importcx.partial, importcx.set
local need_string, string_list, path_for = importcx.need_string, importcx.string_list, importcx.path_for

-- Durations and sizes --------------------------------------------------------------------------

local GO_UNITS = { h = 3600, m = 60, s = 1, ms = 1e-3, us = 1e-6, ["\xc2\xb5s"] = 1e-6,
                   ["\xce\xbcs"] = 1e-6, ns = 1e-9 }

-- A Go duration ("1m30s", "1.5s", "300ms") or a number of seconds -> seconds | nil
local function go_seconds(v)
  if type(v) == "number" then return v >= 0 and v or nil end
  if type(v) ~= "string" then return nil end
  local s = v:gsub("^%+", "")
  if s == "0" then return 0 end
  if s == "" then return nil end
  local total, pos = 0, 1
  while pos <= #s do
    local num, unit, nxt = s:match("^(%d*%.?%d*)([^%d%.]+)()", pos)
    if not num or num == "" or num == "." or not GO_UNITS[unit] then return nil end
    total = total + tonumber(num) * GO_UNITS[unit]
    pos = nxt
  end
  return total
end

-- Components -----------------------------------------------------------------------------------

-- The order a written stack file lists fields in: what runs, then what it needs, then limits.
-- Every mw.fields entry with compose keys must be here (tests/unit/test_fields.lua checks).
local FIELD_ORDER = {
  "image", "build", "pull", "command", "entrypoint", "working_dir", "user", "env", "env_file", "job", "profiles", "depends_on",
  "heartbeat", "restart", "ports", "volumes", "secrets", "configs", "networks", "scale", "memory", "cpus",
  "shm_size", "ulimits", "hostname", "extra_hosts", "labels", "stop_signal", "stop_grace",
  "init", "read_only", "cap_add", "cap_drop", "privileged", "devices", "gpus", "sysctls", "dns",
  "dns_search", "dns_opt", "security_opt", "ipc", "pid", "group_add", "oom_score_adj",
  "memory_reservation", "logging", "network_mode",
}

local EMPTY_WORDS = "an empty value resets the image's, which mw cannot express"

-- Words for command, entrypoint and health checks: a string stays a string (mw splits it the
-- shell's way, as compose does), a list stays a list.
local function words(cx, comp, key, v)
  if v == NULL then return nil end
  if type(v) == "string" then
    v = v:match("^(.-)%s*$")
    if v == "" then partial(cx, comp, key, v, EMPTY_WORDS); return nil end
    return v
  end
  local list = string_list(comp, key, v)
  if #list == 0 then partial(cx, comp, key, v, EMPTY_WORDS); return nil end
  return list
end

local H = {}     -- handlers by compose key: function(cx, comp, value, svc)

function H.image(cx, comp, v, svc)
  if svc.build ~= nil and not comp.remote_build then
    partial(cx, comp, "image", v, "ignored beside 'build': compose tags the built image so, mw names it itself")
    return
  end
  comp.fields.image = need_string(comp, "image", v)
end

local BUILD_KEYS = { context = true, dockerfile = true, args = true, target = true, pull = true }

function H.build(cx, comp, v, svc)
  local context = v
  if is_map(v) then context = v.context == nil and "." or v.context end
  context = need_string(comp, "build.context", context)
  if context:find("^%a[%w+.-]*://") or context:find("^git@") then
    if svc.image ~= nil then
      comp.remote_build = true
      partial(cx, comp, "build", v, "mw builds only from a local directory; using 'image' instead")
      return
    end
    fatal(string.format("service %s: build context %s is remote; mw builds only from a local directory",
      comp.orig, compact(context)))
  end
  context = path_for(cx, context)
  if type(v) == "string" then comp.fields.build = context; return end
  local b = { { "context", context } }
  if v.dockerfile ~= nil then b[#b + 1] = { "dockerfile", need_string(comp, "build.dockerfile", v.dockerfile) } end
  if v.args ~= nil and v.args ~= NULL then
    local args = {}
    if is_map(v.args) then
      for k, x in pairs(v.args) do
        args[k] = x == NULL and raw("os.getenv " .. quote(k)) or need_string(comp, "build.args", x)
      end
    else
      for _, item in ipairs(string_list(comp, "build.args", v.args)) do
        local k, x = item:match("^([^=]+)=(.*)$")
        if k then args[k] = x else args[item] = raw("os.getenv " .. quote(item)) end
      end
    end
    if next(args) then b[#b + 1] = { "args", args } end
  end
  if v.target ~= nil then b[#b + 1] = { "target", need_string(comp, "build.target", v.target) } end
  if bool_of(v.pull) then b[#b + 1] = { "pull", true } end
  for _, k in ipairs(sorted_keys(v)) do
    if not BUILD_KEYS[k] then unsupported(cx, comp, "build." .. k, v[k]) end
  end
  comp.fields.build = #b == 1 and context or ordered(b)
end

function H.command(cx, comp, v) comp.fields.command = words(cx, comp, "command", v) end
function H.entrypoint(cx, comp, v) comp.fields.entrypoint = words(cx, comp, "entrypoint", v) end

-- environment and env_file together: env_file first (later files win), environment last. The
-- env files become the `env_file` field (mw reads them when the stack loads, each value kept as
-- a secret, and env wins over them as environment does here), so their values are not copied
-- into the stack file; each is read now only to check it parses as mw will read it.
local function env(cx, comp, svc)
  if comp.env_done then return end
  comp.env_done = true
  local final, groups = {}, {}
  local function put(key, value, source)
    final[key] = { value = value, source = source }
    if not groups[source] then
      groups[source] = true
      groups[#groups + 1] = source
    end
  end
  local files, env_files = svc.env_file, {}
  if files ~= nil and files ~= NULL then
    if type(files) ~= "table" then files = { files } end
    for _, f in ipairs(files) do
      local path, required = f, true
      if is_map(f) then
        path = f.path
        if f.required ~= nil then required = bool_of(f.required) ~= false end
        if f.format ~= nil then unsupported(cx, comp, "env_file.format", f.format) end
      end
      path = need_string(comp, "env_file", path)
      local full = join(cx.dir, path)
      local text, err, code = cx.read_only(full)
      if not text then
        if required or (code and code ~= "ENOENT") then
          err = tostring(err)
          if err:sub(1, #full + 2) == full .. ": " then err = err:sub(#full + 3) end
          fatal(string.format("service %s: env_file %s: %s", comp.orig, path, err))
        end
        partial(cx, comp, "env_file", path, "not found when imported (required: false), skipped")
      else
        local entries, perr = dotenv.parse(text)
        if not entries then fatal(string.format("service %s: env_file %s: %s", comp.orig, path, perr)) end
        local rel = path_for(cx, path)
        -- listed twice: the later place wins in compose, and mw refuses a file listed twice
        for i = #env_files, 1, -1 do if env_files[i] == rel then table.remove(env_files, i) end end
        env_files[#env_files + 1] = rel
        if not required then
          warn(cx, string.format("service %s: env_file %s: required: false, but mw reads it whenever the stack "
            .. "loads and needs it to be there", comp.orig, path))
        end
      end
    end
  end
  local e = svc.environment
  if e ~= nil and e ~= NULL then
    local label = "from the compose file's environment"
    if is_map(e) then
      for _, k in ipairs(sorted_keys(e)) do
        local x = e[k]
        if x == NULL then put(k, raw("os.getenv " .. quote(k)), label)
        elseif type(x) == "table" then fatal(string.format("service %s: environment.%s must be text", comp.orig, k))
        else put(k, x, label) end
      end
    else
      for _, item in ipairs(string_list(comp, "environment", e)) do
        local k, x = item:match("^([^=]+)=(.*)$")
        if k then put(k, x, label) else put(item, raw("os.getenv " .. quote(item)), label) end
      end
    end
  end
  if #env_files > 0 then comp.fields.env_file = #env_files == 1 and env_files[1] or env_files end
  if #groups == 0 then return end
  local pad = string.rep(" ", 8)
  local lines = { "{" }
  for _, source in ipairs(groups) do
    local keys = {}
    for k, x in pairs(final) do if x.source == source then keys[#keys + 1] = k end end
    table.sort(keys)
    if #keys > 0 then
      if #groups > 1 or source ~= "from the compose file's environment" then
        lines[#lines + 1] = pad .. "-- " .. source
      end
      for _, k in ipairs(keys) do
        lines[#lines + 1] = pad .. lua_key(k) .. " = " .. render(final[k].value, 8) .. ","
      end
    end
  end
  lines[#lines + 1] = string.rep(" ", 6) .. "}"
  comp.fields.env = raw(table.concat(lines, "\n"))
end

function H.environment(cx, comp, _, svc) env(cx, comp, svc) end
H.env_file = H.environment

local CONDITIONS = {
  service_started = "started", service_healthy = "healthy",
  service_completed_successfully = "completed",
}

-- profiles: the same names; `mw run --profile` includes them as compose's does.
function H.profiles(_, comp, v)
  if v == NULL then return end
  local list = string_list(comp, "profiles", v)
  if #list > 0 then comp.fields.profiles = list end
end

function H.depends_on(cx, comp, v)
  comp.deps = {}
  if type(v) == "string" then v = { v } end
  if is_list(v) then
    for _, d in ipairs(v) do
      comp.deps[#comp.deps + 1] = { name = need_string(comp, "depends_on", d), cond = "started" }
    end
    return
  end
  if not is_map(v) then fatal(string.format("service %s: 'depends_on' must be a list or a mapping", comp.orig)) end
  for _, d in ipairs(sorted_keys(v)) do
    local o = v[d]
    local cond = "service_started"
    if is_map(o) then
      cond = o.condition ~= nil and str_of(o.condition) or cond
      for _, k in ipairs(sorted_keys(o)) do
        if k == "required" and bool_of(o[k]) == false then
          partial(cx, comp, "depends_on." .. d .. ".required", o[k],
            "no equivalent: mw waits for every dependency")
        elseif k == "restart" and bool_of(o[k]) == true then
          partial(cx, comp, "depends_on." .. d .. ".restart", o[k],
            "no equivalent: use a policy with on_limit = \"dependents\" on " .. d)
        elseif k ~= "condition" and k ~= "required" and k ~= "restart" then
          unsupported(cx, comp, "depends_on." .. d .. "." .. k, o[k])
        end
      end
    end
    local mwcond = CONDITIONS[cond]
    if not mwcond then
      fatal(string.format("service %s: depends_on %s: unknown condition %s", comp.orig, d, compact(cond)))
    end
    comp.deps[#comp.deps + 1] = { name = d, cond = mwcond }
  end
end

local function dur_text(comp, key, v)
  local s = go_seconds(v)
  if not s then fatal(string.format("service %s: '%s': bad duration %s", comp.orig, key, compact(v))) end
  return duration.format(s)
end

function H.healthcheck(cx, comp, v)
  if not is_map(v) then fatal(string.format("service %s: 'healthcheck' must be a mapping", comp.orig)) end
  local test = v.test
  if bool_of(v.disable) == true or (is_list(test) and test[1] == "NONE") then
    comp.fields.heartbeat = false
    return
  end
  if test == nil or test == NULL then
    partial(cx, comp, "healthcheck", v, "without 'test' it relies on the image's HEALTHCHECK, which mw does not run")
    return
  end
  local exec
  if type(test) == "string" then
    exec = { "sh", "-c", test }
  else
    local list = string_list(comp, "healthcheck.test", test)
    local kind = table.remove(list, 1)
    if kind == "CMD" then
      exec = list
    elseif kind == "CMD-SHELL" then
      exec = { "sh", "-c", table.concat(list, " ") }
    else
      fatal(string.format("service %s: healthcheck.test must start with CMD, CMD-SHELL or NONE, got %s",
        comp.orig, compact(kind)))
    end
  end
  if #exec == 0 or (exec[1] == "sh" and exec[3] == "") then
    fatal(string.format("service %s: healthcheck.test has no command", comp.orig))
  end
  -- Compose's defaults, written out: mw's own (500ms, 1s) would exec far more often.
  local hb = { { "exec", exec },
               { "interval", dur_text(comp, "healthcheck.interval", v.interval == nil and "30s" or v.interval) },
               { "timeout", dur_text(comp, "healthcheck.timeout", v.timeout == nil and "30s" or v.timeout) } }
  local retries = v.retries == nil and 3 or v.retries
  hb[#hb + 1] = { "misses", math.tointeger(tonumber(retries)) or retries }
  if v.start_period ~= nil then
    hb[#hb + 1] = { "grace", dur_text(comp, "healthcheck.start_period", v.start_period) }
  end
  comp.fields.heartbeat = ordered(hb)
  for _, k in ipairs(sorted_keys(v)) do
    if k ~= "test" and k ~= "interval" and k ~= "timeout" and k ~= "retries" and k ~= "start_period"
        and k ~= "disable" then
      unsupported(cx, comp, "healthcheck." .. k, v[k])
    end
  end
end

local function policy_code(cx, kind, limit, within, delay)
  cx.uses.policy = true
  local parts = {}
  if delay then
    cx.uses.backoff = true
    parts[#parts + 1] = "backoff = backoff.constant { delay = " .. quote(delay) .. " }"
  end
  if limit then
    parts[#parts + 1] = string.format("limit = { restarts = %d, within = %s }", limit, quote(within or "1h"))
  end
  return raw("policy." .. kind .. (#parts > 0 and (" { " .. table.concat(parts, ", ") .. " }") or " {}"))
end

function H.restart(cx, comp, v)
  local s = v
  if bool_of(v) == false then s = "no" end
  s = need_string(comp, "restart", s)
  if s == "no" then
    comp.fields.restart = policy_code(cx, "never")
  elseif s == "always" or s == "unless-stopped" then
    comp.fields.restart = policy_code(cx, "always")
  elseif s == "on-failure" then
    comp.fields.restart = policy_code(cx, "on_failure")
  elseif s:find("^on%-failure:%d+$") then
    local n = math.tointeger(tonumber(s:match("%d+")))
    comp.fields.restart = policy_code(cx, "on_failure", n > 0 and n or nil)
    if n > 0 then
      note(comp, "restart: " .. s .. "  (compose counts restarts in all; mw counts them within an hour)")
    end
  else
    partial(cx, comp, "restart", v, "not a restart policy compose knows")
  end
end

local RESTART_CONDITION = { none = "never", ["on-failure"] = "on_failure", any = "always" }

local function restart_policy(cx, comp, rp)
  if comp.svc.restart ~= nil then
    partial(cx, comp, "deploy.restart_policy", rp, "ignored: 'restart' is given too and wins")
    return
  end
  if not is_map(rp) then fatal(string.format("service %s: deploy.restart_policy must be a mapping", comp.orig)) end
  local kind = RESTART_CONDITION[str_of(rp.condition) or "any"]
  if not kind then
    fatal(string.format("service %s: deploy.restart_policy.condition %s is unknown", comp.orig, compact(rp.condition)))
  end
  local limit = rp.max_attempts ~= nil and math.tointeger(tonumber(rp.max_attempts)) or nil
  if limit == 0 then limit = nil end
  local within = rp.window ~= nil and dur_text(comp, "deploy.restart_policy.window", rp.window) or nil
  local delay = rp.delay ~= nil and dur_text(comp, "deploy.restart_policy.delay", rp.delay) or nil
  comp.fields.restart = policy_code(cx, kind, kind ~= "never" and limit or nil, within, delay)
  for _, k in ipairs(sorted_keys(rp)) do
    if k ~= "condition" and k ~= "max_attempts" and k ~= "window" and k ~= "delay" then
      unsupported(cx, comp, "deploy.restart_policy." .. k, rp[k])
    end
  end
end
-- Ports, volumes, secrets and networks: mw.compose_attach.
for k, h in pairs(attach) do if k ~= "add_volume" and k ~= "ipam_subnet" then H[k] = h end end
local add_volume = attach.add_volume

-- Resources and the rest ----------------------------------------------------------------------

local function size_value(v)
  if type(v) == "number" then return math.tointeger(v) or v end
  return v
end

local function cpus_value(comp, v)
  local n = tonumber(v)
  if not n then fatal(string.format("service %s: bad cpus %s", comp.orig, compact(v))) end
  return n
end

-- deploy.resources.reservations.devices: compose's long form of `gpus` (one entry whose
-- capabilities include "gpu"); other device reservations have no engine equivalent.
local function gpu_reservation(cx, comp, list)
  if not is_list(list) then fatal(string.format("service %s: reservations.devices must be a list", comp.orig)) end
  for i, d in ipairs(list) do
    local key = "deploy.resources.reservations.devices[" .. i .. "]"
    local caps = is_map(d) and is_list(d.capabilities) and d.capabilities or {}
    local gpu = false
    for _, c in ipairs(caps) do if c == "gpu" then gpu = true end end
    if not gpu or comp.fields.gpus ~= nil then
      unsupported(cx, comp, key, d, gpu and "only one GPU request is kept" or "only GPU requests have an equivalent")
    else
      local g = {}
      if d.count == "all" or d.count == nil then g.count = d.device_ids == nil and "all" or nil
      else g.count = math.tointeger(tonumber(d.count)) or d.count end
      if d.device_ids ~= nil then g.ids = string_list(comp, key .. ".device_ids", d.device_ids) end
      g.capabilities = string_list(comp, key .. ".capabilities", caps)
      if d.driver ~= nil then g.driver = need_string(comp, key .. ".driver", d.driver) end
      if is_map(d.options) then
        local o = {}
        for k, x in pairs(d.options) do o[k] = str_of(x) end
        g.options = o
      end
      for _, k in ipairs(sorted_keys(d)) do
        if k ~= "count" and k ~= "device_ids" and k ~= "capabilities" and k ~= "driver" and k ~= "options" then
          unsupported(cx, comp, key .. "." .. k, d[k])
        end
      end
      local kv = {}
      for _, k in ipairs { "count", "ids", "capabilities", "driver", "options" } do
        if g[k] ~= nil then kv[#kv + 1] = { k, g[k] } end
      end
      comp.fields.gpus = ordered(kv)
    end
  end
end

function H.deploy(cx, comp, v)
  if not is_map(v) then fatal(string.format("service %s: 'deploy' must be a mapping", comp.orig)) end
  for _, k in ipairs(sorted_keys(v)) do
    local x = v[k]
    if k == "replicas" then
      set(cx, comp, "scale", math.tointeger(tonumber(x)) or x, "deploy.replicas", x)
    elseif k == "restart_policy" then
      restart_policy(cx, comp, x)
    elseif k == "resources" and is_map(x) then
      for _, r in ipairs(sorted_keys(x)) do
        local lim = x[r]
        if r == "reservations" and is_map(lim) then
          for _, l in ipairs(sorted_keys(lim)) do
            local key = "deploy.resources.reservations." .. l
            if l == "memory" then set(cx, comp, "memory_reservation", size_value(lim[l]), key, lim[l])
            elseif l == "devices" then gpu_reservation(cx, comp, lim[l])
            else unsupported(cx, comp, key, lim[l], l == "cpus" and "the engine reserves no CPU outside swarm" or nil) end
          end
        elseif r == "limits" and is_map(lim) then
          for _, l in ipairs(sorted_keys(lim)) do
            local key = "deploy.resources.limits." .. l
            if l == "memory" then set(cx, comp, "memory", size_value(lim[l]), key, lim[l])
            elseif l == "cpus" then set(cx, comp, "cpus", cpus_value(comp, lim[l]), key, lim[l])
            else unsupported(cx, comp, key, lim[l]) end
          end
        else
          unsupported(cx, comp, "deploy.resources." .. r, lim)
        end
      end
    elseif k ~= "mode" or x ~= "replicated" then
      unsupported(cx, comp, "deploy." .. k, x)
    end
  end
end

function H.scale(cx, comp, v) set(cx, comp, "scale", math.tointeger(tonumber(v)) or v, "scale", v) end
function H.mem_limit(cx, comp, v) set(cx, comp, "memory", size_value(v), "mem_limit", v) end
function H.cpus(cx, comp, v) set(cx, comp, "cpus", cpus_value(comp, v), "cpus", v) end
function H.shm_size(_, comp, v) comp.fields.shm_size = size_value(v) end

function H.working_dir(_, comp, v) comp.fields.working_dir = need_string(comp, "working_dir", v) end
function H.user(_, comp, v) comp.fields.user = need_string(comp, "user", v) end
function H.hostname(_, comp, v) comp.fields.hostname = need_string(comp, "hostname", v) end
function H.stop_signal(_, comp, v) comp.fields.stop_signal = need_string(comp, "stop_signal", v) end
function H.stop_grace_period(_, comp, v) comp.fields.stop_grace = dur_text(comp, "stop_grace_period", v) end

local function boolean_field(field)
  return function(_, comp, v)
    local b = bool_of(v)
    if b == nil then
      fatal(string.format("service %s: '%s' must be true or false, got %s", comp.orig, field, compact(v)))
    end
    comp.fields[field] = b
  end
end
H.init = boolean_field("init")
H.read_only = boolean_field("read_only")

function H.cap_add(_, comp, v) comp.fields.cap_add = string_list(comp, "cap_add", v) end
function H.cap_drop(_, comp, v) comp.fields.cap_drop = string_list(comp, "cap_drop", v) end

function H.labels(cx, comp, v)
  local out = {}
  if is_map(v) then
    for k, x in pairs(v) do out[k] = x == NULL and "" or need_string(comp, "labels", x) end
  else
    for _, item in ipairs(string_list(comp, "labels", v)) do
      local k, x = item:match("^([^=]+)=(.*)$")
      if k then out[k] = x else out[item] = "" end
    end
  end
  for _, k in ipairs(sorted_keys(out)) do
    if k == owner.KEY or k:sub(1, 3) == "mw." then
      partial(cx, comp, "labels." .. k, out[k], "the label is reserved for mw")
      out[k] = nil
    end
  end
  if next(out) then comp.fields.labels = out end
end

function H.extra_hosts(_, comp, v)
  local out = {}
  local function add(h, ip)
    ip = ip:match("^%[(.*)%]$") or ip
    out[#out + 1] = h .. ":" .. ip
  end
  if is_map(v) then
    for _, h in ipairs(sorted_keys(v)) do
      local ips = v[h]
      if type(ips) == "table" then
        for _, ip in ipairs(ips) do add(h, need_string(comp, "extra_hosts", ip)) end
      else
        add(h, need_string(comp, "extra_hosts", ips))
      end
    end
  else
    for _, item in ipairs(string_list(comp, "extra_hosts", v)) do
      local h, ip = item:match("^([^:=]+)[:=](.+)$")
      if not h then fatal(string.format("service %s: bad extra_hosts entry %s", comp.orig, compact(item))) end
      add(h, ip)
    end
  end
  if #out > 0 then comp.fields.extra_hosts = out end
end

function H.ulimits(_, comp, v)
  if not is_map(v) then fatal(string.format("service %s: 'ulimits' must be a mapping", comp.orig)) end
  local out = {}
  for k, x in pairs(v) do
    if is_map(x) then
      out[k] = ordered { { "soft", math.tointeger(tonumber(x.soft)) or x.soft },
                         { "hard", math.tointeger(tonumber(x.hard)) or x.hard } }
    else
      out[k] = math.tointeger(tonumber(x)) or x
    end
  end
  comp.fields.ulimits = out
end

-- pull_policy: compose's "if_not_present" is mw's "missing"; "build" (build, never pull) is what
-- a component with 'build' does anyway; "daily"/"weekly"/"every_<d>" have no equivalent.
local PULL_POLICY = { always = "always", missing = "missing", if_not_present = "missing", never = "never" }
function H.pull_policy(cx, comp, v)
  local s = need_string(comp, "pull_policy", v)
  if PULL_POLICY[s] then comp.fields.pull = PULL_POLICY[s]
  elseif s == "build" then note(comp, "pull_policy: build: the component builds its image and never pulls it")
  else unsupported(cx, comp, "pull_policy", v, "mw pulls \"missing\", \"always\" or \"never\"") end
end

-- network_mode: host and none as they are; service:x shares x's namespace (its component name
-- is known only once every service is named: mw.import resolves comp.net_share).
function H.network_mode(cx, comp, v)
  local s = need_string(comp, "network_mode", v)
  if s == "host" or s == "none" then comp.fields.network_mode = s
  elseif s:find("^service:.") then comp.net_share = s:sub(9)
  else
    unsupported(cx, comp, "network_mode", v, s:find("^container:") and
      "a container outside the stack; share a component's namespace with \"service:<name>\"" or
      "components join the stack's network")
  end
end

H.privileged = boolean_field("privileged")
function H.devices(_, comp, v) comp.fields.devices = string_list(comp, "devices", v) end
function H.gpus(_, comp, v)
  if v == "all" then comp.fields.gpus = "all"; return end
  local n = math.tointeger(tonumber(v))
  if n then comp.fields.gpus = n; return end
  fatal(string.format("service %s: 'gpus' must be \"all\" or a count, got %s", comp.orig, compact(v)))
end
function H.sysctls(_, comp, v)
  local out = {}
  if is_map(v) then
    for k, x in pairs(v) do out[k] = str_of(x) or need_string(comp, "sysctls", x) end
  else
    for _, item in ipairs(string_list(comp, "sysctls", v)) do
      local k, x = item:match("^([^=]+)=(.*)$")
      if not k then fatal(string.format("service %s: bad sysctls entry %s", comp.orig, compact(item))) end
      out[k] = x
    end
  end
  if next(out) then comp.fields.sysctls = out end
end
local function strings_field(key, field)
  return function(_, comp, v)
    comp.fields[field or key] = type(v) == "string" and { v } or string_list(comp, key, v)
  end
end
H.dns = strings_field("dns")
H.dns_search = strings_field("dns_search")
H.dns_opt = strings_field("dns_opt")
H.security_opt = strings_field("security_opt")
function H.group_add(_, comp, v)
  local out = {}
  for i, x in ipairs(is_list(v) and v or {}) do out[i] = str_of(x) or need_string(comp, "group_add", x) end
  if not is_list(v) then fatal(string.format("service %s: 'group_add' must be a list", comp.orig)) end
  comp.fields.group_add = out
end
function H.ipc(cx, comp, v)
  local s = need_string(comp, "ipc", v)
  if s:find("^service:") or s:find("^container:") then
    unsupported(cx, comp, "ipc", v, "sharing another container's IPC namespace is not offered")
  else
    comp.fields.ipc = s
  end
end
function H.pid(cx, comp, v)
  local s = need_string(comp, "pid", v)
  if s ~= "host" then unsupported(cx, comp, "pid", v, "only \"host\" has an equivalent") else comp.fields.pid = s end
end
function H.oom_score_adj(_, comp, v)
  comp.fields.oom_score_adj = math.tointeger(tonumber(v)) or fatal(string.format(
    "service %s: 'oom_score_adj' must be an integer, got %s", comp.orig, compact(v)))
end
function H.mem_reservation(cx, comp, v) set(cx, comp, "memory_reservation", size_value(v), "mem_reservation", v) end
function H.logging(cx, comp, v)
  if not is_map(v) then fatal(string.format("service %s: 'logging' must be a mapping", comp.orig)) end
  local out = {}
  if v.driver ~= nil then out.driver = need_string(comp, "logging.driver", v.driver) end
  if is_map(v.options) then
    local o = {}
    for k, x in pairs(v.options) do o[k] = str_of(x) or need_string(comp, "logging.options." .. k, x) end
    out.options = o
  end
  for _, k in ipairs(sorted_keys(v)) do
    if k ~= "driver" and k ~= "options" then unsupported(cx, comp, "logging." .. k, v[k]) end
  end
  local kv = {}
  if out.driver then kv[#kv + 1] = { "driver", out.driver } end
  if out.options then kv[#kv + 1] = { "options", out.options } end
  comp.fields.logging = ordered(kv)
end

local function service(cx, orig, name, svc)
  if not is_map(svc) then fatal(string.format("service %s must be a mapping, got %s", orig, compact(svc))) end
  -- A key set to null is a key not given, for compose as here.
  local given = {}
  for k, v in pairs(svc) do if v ~= NULL then given[k] = v end end
  svc = given
  local comp = { orig = orig, name = name, fields = {}, notes = {}, svc = svc }
  if svc.image == nil and svc.build == nil then
    fatal(string.format("service %s has neither 'image' nor 'build'", orig))
  end
  -- build before image: a remote build context falls back to the image.
  if svc.build ~= nil then H.build(cx, comp, svc.build, svc) end
  for _, k in ipairs(sorted_keys(svc)) do
    local v = svc[k]
    if k ~= "build" then
      local h = H[k]
      if h then
        h(cx, comp, v, svc)
      else
        unsupported(cx, comp, k, v, k:sub(1, 2) == "x-" and "an extension field" or nil)
      end
    end
  end
  for _, t in ipairs(comp.tmpfs or {}) do add_volume(comp, t) end
  return comp
end

compose.handlers = H
compose.FIELD_ORDER = FIELD_ORDER
compose.Fatal, compose.fatal, compose.warn, compose.lookup, compose.note = Fatal, fatal, warn, lookup, note
compose.service = service
compose.go_seconds = go_seconds

return compose
