-- The service keys of a compose file, each turned into stack fields by its handler (the keys
-- mw.fields names under `compose`), or kept as a comment saying why mw has no equivalent.
local yaml      = require "mw.yaml"
local duration  = require "mw.duration"
local owner     = require "mw.owner"
local paths     = require "mw.path"
local yamlvalue = require "mw.yamlvalue"
local luawriter = require "mw.luawriter"
local dotenv    = require "mw.dotenv"

local compose = {}

local NULL = yaml.null
local normpath, join = paths.normalize, paths.join
local is_list, is_map = yamlvalue.is_list, yamlvalue.is_map
local sorted_keys, str_of = yamlvalue.sorted_keys, yamlvalue.str_of
local bool_of, compact = yamlvalue.bool_of, yamlvalue.compact
local raw, ordered, quote = luawriter.raw, luawriter.ordered, luawriter.quote
local lua_key, render = luawriter.key, luawriter.render

-- The path of abs as seen from the directory from (both absolute), starting with "." so that
-- the stack file reads it as a path and not as a volume name; abs itself when the two share
-- nothing but the root, where a chain of ".." would only obscure it.
local function relpath(from, abs)
  local a, b = {}, {}
  for s in from:gmatch("[^/]+") do a[#a + 1] = s end
  for s in abs:gmatch("[^/]+") do b[#b + 1] = s end
  local i = 1
  while a[i] and b[i] and a[i] == b[i] do i = i + 1 end
  if i == 1 then return abs end
  local parts = {}
  for _ = i, #a do parts[#parts + 1] = ".." end
  for j = i, #b do parts[#parts + 1] = b[j] end
  if #parts == 0 then return "." end
  local s = table.concat(parts, "/")
  return parts[1] == ".." and s or "./" .. s
end

-- Conversion context ---------------------------------------------------------------------------

-- A failure that stops the import: one line, raised through convert's pcall.
local Fatal = {}
local function fatal(msg) error(setmetatable({ msg = msg }, Fatal), 0) end

local function warn(cx, msg)
  if not cx.warned[msg] then
    cx.warned[msg] = true
    cx.warnings[#cx.warnings + 1] = msg
  end
end

-- Records that the value of variable `name` from the env file at `path` is written into the
-- stack file: the command names them (never their values) with the file they came from.
local function baked(cx, path, name)
  local b = cx.baked[path]
  if not b then
    b = { path = path, names = {} }
    cx.baked[path] = b
    cx.baked[#cx.baked + 1] = b
  end
  b.names[name] = true
end

local function lookup(cx, name)
  local v = cx.getenv(name)
  if v == nil then
    v = cx.dotenv[name]
    if v ~= nil then baked(cx, cx.dotenv_path, name) end
  end
  return v
end

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

local FIELD_ORDER = {
  "image", "build", "command", "entrypoint", "working_dir", "user", "env", "depends_on",
  "heartbeat", "restart", "ports", "volumes", "secrets", "networks", "scale", "memory", "cpus",
  "shm_size", "ulimits", "hostname", "extra_hosts", "labels", "stop_signal", "stop_grace",
  "init", "read_only", "cap_add", "cap_drop",
}

-- Why some compose keys have no equivalent, for the comment and the warning.
local WHY = {
  container_name = "mw names containers <stack>-<component>",
  profiles = "compose starts this service only with --profile; mw always runs it",
  network_mode = "components join the stack's network",
  expose = "components reach each other's ports on the stack network without it",
  links = "components reach each other by name on the stack network",
  external_links = "components reach each other by name on the stack network",
  configs = "mount the file with a read-only bind volume instead",
  extends = "copy the fields of the extended service here",
}

local function note(comp, text) comp.notes[#comp.notes + 1] = text end

-- Keeps a compose key as a comment and says so on stderr.
local function unsupported(cx, comp, key, value, why)
  why = why or WHY[key]
  note(comp, string.format("%s: %s  (no equivalent in mw%s)", key, compact(value), why and ("; " .. why) or ""))
  warn(cx, string.format("service %s: '%s' has no equivalent%s (kept as a comment)", comp.orig, key,
    why and (": " .. why) or ""))
end

-- Keeps a value mw can only take part of, or not in this form, as a comment and says why.
local function partial(cx, comp, key, value, problem)
  note(comp, string.format("%s: %s  (%s)", key, compact(value), problem))
  warn(cx, string.format("service %s: '%s': %s (kept as a comment)", comp.orig, key, problem))
end

local function set(cx, comp, field, value, key, raw_value)
  if comp.fields[field] ~= nil then
    partial(cx, comp, key, raw_value, "ignored: '" .. field .. "' is already set from another key")
    return
  end
  comp.fields[field] = value
end

local function need_string(comp, key, v)
  local s = str_of(v)
  if s == nil then fatal(string.format("service %s: '%s' must be text, got %s", comp.orig, key, compact(v))) end
  return s
end

local function string_list(comp, key, v)
  if type(v) ~= "table" or not is_list(v) then
    fatal(string.format("service %s: '%s' must be a list, got %s", comp.orig, key, compact(v)))
  end
  local out = {}
  for i, x in ipairs(v) do out[i] = need_string(comp, key, x) end
  return out
end

-- A path from the compose file as the stack file must write it.
local function path_for(cx, p)
  if p:sub(1, 1) == "~" then
    local home = lookup(cx, "HOME")
    if not home then fatal(string.format("cannot expand %s: HOME is not set", compact(p))) end
    local abs = normpath(home .. p:sub(2))
    warn(cx, string.format("path %s expanded to %s", compact(p), abs))
    return abs
  end
  if p:sub(1, 1) == "/" then return normpath(p) end
  if cx.same_dir then
    local n = normpath(p)
    if n == "." or n:sub(1, 3) == "../" or n == ".." then return n end
    return "./" .. n
  end
  if not cx.rewrote then
    cx.rewrote = true
    warn(cx, "the stack file is not beside the compose file: relative paths are rewritten to stay " ..
      "correct from " .. cx.out_dir)
  end
  return relpath(cx.out_dir, join(cx.dir, p))
end

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

local BUILD_KEYS = { context = true, dockerfile = true, args = true, target = true }

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
  for _, k in ipairs(sorted_keys(v)) do
    if not BUILD_KEYS[k] then unsupported(cx, comp, "build." .. k, v[k]) end
  end
  comp.fields.build = #b == 1 and context or ordered(b)
end

function H.command(cx, comp, v) comp.fields.command = words(cx, comp, "command", v) end
function H.entrypoint(cx, comp, v) comp.fields.entrypoint = words(cx, comp, "entrypoint", v) end

-- environment and env_file together: env_file first (later files win), environment last.
local function env(cx, comp, svc)
  if comp.env_done then return end
  comp.env_done = true
  local final, groups = {}, {}
  local function put(key, value, source, file)
    final[key] = { value = value, source = source, file = file }
    if not groups[source] then
      groups[source] = true
      groups[#groups + 1] = source
    end
  end
  local files = svc.env_file
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
      local text, err = cx.read(full)
      if not text then
        if required then
          err = tostring(err)
          if err:sub(1, #full + 2) == full .. ": " then err = err:sub(#full + 3) end
          fatal(string.format("service %s: env_file %s: %s", comp.orig, path, err))
        end
        partial(cx, comp, "env_file", path, "not found when imported (required: false), skipped")
      else
        local entries, perr = dotenv.parse(text)
        if not entries then fatal(string.format("service %s: env_file %s: %s", comp.orig, path, perr)) end
        local label = "from " .. path_for(cx, path)
        for _, e in ipairs(entries) do
          put(e[1], e[2] == nil and raw("os.getenv " .. quote(e[1])) or e[2], label, e[2] ~= nil and full or nil)
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
  if #groups == 0 then return end
  for k, x in pairs(final) do if x.file then baked(cx, x.file, k) end end
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
  service_completed_successfully = "started",
}

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
    if cond == "service_completed_successfully" then
      partial(cx, comp, "depends_on." .. d .. ".condition", cond,
        "no equivalent: mw cannot wait for a component to finish; using \"started\"")
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

-- Ports ---------------------------------------------------------------------------------------

local MAX_RANGE = 20

local function port_range(s)
  local a, b = s:match("^(%d+)%-(%d+)$")
  if a then return tonumber(a), tonumber(b) end
  local n = s:match("^%d+$")
  if n then return tonumber(n), tonumber(n) end
  return nil
end

-- Expands "[ip:][host[-host]:]container[-container][/proto]" into mw port strings, or returns
-- nil, why when it cannot.
local function short_port(s)
  local body, proto = s:match("^(.*)/(%w+)$")
  if not body then body, proto = s, nil end
  local ip, rest = body:match("^(%[[%x:%.]+%]):(.*)$")
  if not ip then
    local parts = {}
    for p in (body .. ":"):gmatch("([^:]*):") do parts[#parts + 1] = p end
    if #parts == 3 then ip, rest = parts[1], parts[2] .. ":" .. parts[3] else rest = body end
  end
  local host, cont = rest:match("^([^:]*):([^:]*)$")
  if not host then cont = rest end
  if not cont:find("-", 1, true) and not (host or ""):find("-", 1, true) then return { s } end
  local c1, c2 = port_range(cont)
  if not c1 or c2 < c1 then return nil, "a bad port range" end
  local h1, h2
  if host and host ~= "" then
    h1, h2 = port_range(host)
    if not h1 or h2 < h1 then return nil, "a bad port range" end
    if h2 - h1 ~= c2 - c1 then
      return nil, "a host range for fewer or more container ports; mw publishes each port on a fixed host port"
    end
  end
  if c2 - c1 + 1 > MAX_RANGE then return nil, "a range of more than " .. MAX_RANGE .. " ports; list the ports" end
  local out = {}
  for i = 0, c2 - c1 do
    local p = tostring(c1 + i)
    if h1 then p = tostring(h1 + i) .. ":" .. p elseif host == "" then p = ":" .. p end
    if ip then p = ip .. ":" .. p end
    if proto then p = p .. "/" .. proto end
    out[#out + 1] = p
  end
  return out
end

local LONG_PORT = { target = true, published = true, host_ip = true, protocol = true }

function H.ports(cx, comp, v)
  if not is_list(v) then fatal(string.format("service %s: 'ports' must be a list", comp.orig)) end
  local out = {}
  for _, p in ipairs(v) do
    if type(p) == "number" then
      out[#out + 1] = p
    elseif type(p) == "string" then
      local list, why = short_port(p)
      if not list then
        partial(cx, comp, "ports", p, "no equivalent for " .. why)
      else
        for _, x in ipairs(list) do out[#out + 1] = x end
      end
    elseif is_map(p) then
      local t = {}
      local target = p.target
      local published = p.published ~= nil and p.published ~= NULL and str_of(p.published) or nil
      if published == "" then published = nil end
      local ok = true
      if published and published:find("-", 1, true) then
        local a, b = port_range(published)
        if a and a == b then published = tostring(a)
        else
          partial(cx, comp, "ports", p, "no equivalent for a host port range for one container port")
          ok = false
        end
      end
      if ok then
        t[#t + 1] = { "container", math.tointeger(tonumber(target)) or target }
        if published then t[#t + 1] = { "host", math.tointeger(tonumber(published)) or published } end
        if p.host_ip ~= nil then t[#t + 1] = { "ip", need_string(comp, "ports.host_ip", p.host_ip) } end
        if p.protocol ~= nil then t[#t + 1] = { "proto", need_string(comp, "ports.protocol", p.protocol) } end
        out[#out + 1] = ordered(t)
        for _, k in ipairs(sorted_keys(p)) do
          if not LONG_PORT[k] then
            unsupported(cx, comp, "ports." .. k, p[k], k == "mode" and "ports are published on this host" or nil)
          end
        end
      end
    else
      fatal(string.format("service %s: bad port %s", comp.orig, compact(p)))
    end
  end
  if #out > 0 then comp.fields.ports = out end
end

-- Volumes -------------------------------------------------------------------------------------

local function is_path(s) return s:find("^[/.~]") ~= nil end

local function check_named(cx, comp, name)
  if not cx.volumes[name] then
    warn(cx, string.format("service %s: volume '%s' is not declared under the top-level 'volumes'", comp.orig, name))
  end
end

local function add_volume(comp, v)
  comp.fields.volumes = comp.fields.volumes or {}
  table.insert(comp.fields.volumes, v)
end

local function tmpfs_entry(cx, comp, target, opts, what)
  local t = { { "tmpfs", target } }
  for _, o in ipairs(opts) do
    local k, x = o:match("^([^=]+)=(.*)$")
    if k == "size" then
      t[#t + 1] = { "size", math.tointeger(tonumber(x)) or x }
    elseif o ~= "" and o ~= "rw" then
      partial(cx, comp, what, target .. ":" .. o, "the tmpfs option '" .. (k or o) .. "' has no equivalent")
    end
  end
  return ordered(t)
end

local function short_volume(cx, comp, s)
  local parts = {}
  for p in (s .. ":"):gmatch("([^:]*):") do parts[#parts + 1] = p end
  if #parts == 1 then
    partial(cx, comp, "volumes", s,
      "an anonymous volume would be lost on every recreation; name it: \"name:" .. s .. "\"")
    return
  end
  local src, target, mode = parts[1], parts[2], table.concat(parts, ":", 3)
  if #parts > 3 or src == "" or target == "" then
    fatal(string.format("service %s: bad volume %s", comp.orig, compact(s)))
  end
  local ro = false
  for o in mode:gmatch("[^,]+") do
    if o == "ro" then ro = true
    elseif o ~= "rw" then
      partial(cx, comp, "volumes", s, "the mount option '" .. o .. "' has no equivalent")
    end
  end
  if is_path(src) then
    src = path_for(cx, src)
  else
    check_named(cx, comp, src)
  end
  add_volume(comp, src .. ":" .. target .. (ro and ":ro" or ""))
end

local LONG_VOLUME = { type = true, source = true, target = true, read_only = true, tmpfs = true }

local function long_volume(cx, comp, v)
  local kind = str_of(v.type) or "volume"
  local target = need_string(comp, "volumes.target", v.target)
  local ro = bool_of(v.read_only) == true
  if kind == "tmpfs" then
    local opts = {}
    if is_map(v.tmpfs) then
      if v.tmpfs.size ~= nil then opts[#opts + 1] = "size=" .. str_of(v.tmpfs.size) end
      for _, k in ipairs(sorted_keys(v.tmpfs)) do
        if k ~= "size" then unsupported(cx, comp, "volumes.tmpfs." .. k, v.tmpfs[k]) end
      end
    end
    add_volume(comp, tmpfs_entry(cx, comp, target, opts, "volumes"))
  elseif kind == "volume" or kind == "bind" then
    local src = v.source ~= nil and v.source ~= NULL and str_of(v.source) or nil
    if not src or src == "" then
      partial(cx, comp, "volumes", v, "an anonymous volume would be lost on every recreation; give it a source")
      return
    end
    if kind == "bind" then
      src = path_for(cx, src)
    else
      check_named(cx, comp, src)
    end
    add_volume(comp, src .. ":" .. target .. (ro and ":ro" or ""))
  else
    partial(cx, comp, "volumes", v, "volumes of type '" .. kind .. "' have no equivalent")
    return
  end
  for _, k in ipairs(sorted_keys(v)) do
    if not LONG_VOLUME[k] then unsupported(cx, comp, "volumes." .. k, v[k]) end
  end
end

function H.volumes(cx, comp, v)
  if not is_list(v) then fatal(string.format("service %s: 'volumes' must be a list", comp.orig)) end
  for _, item in ipairs(v) do
    if type(item) == "string" then short_volume(cx, comp, item)
    elseif is_map(item) then long_volume(cx, comp, item)
    else fatal(string.format("service %s: bad volume %s", comp.orig, compact(item))) end
  end
end

function H.tmpfs(cx, comp, v)
  if type(v) == "string" then v = { v } end
  for _, item in ipairs(string_list(comp, "tmpfs", v)) do
    local target, opts = item:match("^([^:]+):(.*)$")
    target = target or item
    local list = {}
    for o in (opts or ""):gmatch("[^,]+") do list[#list + 1] = o end
    comp.tmpfs = comp.tmpfs or {}
    table.insert(comp.tmpfs, tmpfs_entry(cx, comp, target, list, "tmpfs"))
  end
end

-- Secrets -------------------------------------------------------------------------------------

function H.secrets(cx, comp, v)
  if not is_list(v) then fatal(string.format("service %s: 'secrets' must be a list", comp.orig)) end
  local out = {}
  for _, item in ipairs(v) do
    local source, name = item, nil
    if is_map(item) then
      source = item.source
      for _, k in ipairs(sorted_keys(item)) do
        if k ~= "source" and k ~= "target" then unsupported(cx, comp, "secrets." .. k, item[k]) end
      end
      if item.target ~= nil then
        local t = need_string(comp, "secrets.target", item.target)
        name = t:match("^/run/secrets/([^/]+)$") or (not t:find("/") and t) or nil
        if not name then
          partial(cx, comp, "secrets", item, "no equivalent: mw mounts secrets at /run/secrets/<name> only")
          goto continue
        end
      end
    end
    source = need_string(comp, "secrets", source)
    name = name or source
    do
      local def = cx.secrets[source]
      if not def then
        partial(cx, comp, "secrets", item, "no top-level secret '" .. source .. "'")
      elseif not is_map(def) or def.file == nil then
        partial(cx, comp, "secrets", item,
          "secret '" .. source .. "' is not a file; mw mounts secrets from files only")
      else
        out[name] = path_for(cx, need_string(comp, "secrets.file", def.file))
      end
    end
    ::continue::
  end
  if next(out) then comp.fields.secrets = out end
end

-- Networks ------------------------------------------------------------------------------------

function H.networks(cx, comp, v)
  local out = {}
  local function add(n)
    -- compose's "default" network is the stack's own network in mw.
    if n ~= "default" then out[#out + 1] = n end
  end
  if is_list(v) then
    for _, n in ipairs(string_list(comp, "networks", v)) do add(n) end
  elseif is_map(v) then
    for _, n in ipairs(sorted_keys(v)) do
      add(n)
      local o = v[n]
      if is_map(o) then
        for _, k in ipairs(sorted_keys(o)) do
          unsupported(cx, comp, "networks." .. n .. "." .. k, o[k],
            k == "aliases" and "a component is known by its name on the stack network" or nil)
        end
      end
    end
  else
    fatal(string.format("service %s: 'networks' must be a list or a mapping", comp.orig))
  end
  if #out > 0 then comp.fields.networks = out end
end

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
        if r == "limits" and is_map(lim) then
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

local function service(cx, orig, name, svc)
  if not is_map(svc) then fatal(string.format("service %s must be a mapping, got %s", orig, compact(svc))) end
  -- A key set to null is a key not given, for compose as here.
  local given = {}
  for k, v in pairs(svc) do if v ~= NULL then given[k] = v end end
  svc = given
  local comp = { orig = orig, name = name, fields = {}, notes = {}, svc = svc }
  if svc.image == nil and svc.build == nil then
    fatal(string.format("service %s has neither 'image' nor 'build'%s", orig,
      svc.extends and " (it uses 'extends', which mw import does not follow)" or ""))
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
