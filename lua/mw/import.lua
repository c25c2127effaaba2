-- `mw import`: turns a compose file into an equivalent, readable stack.lua, keeping what has
-- no equivalent as comments so that nothing is silently dropped.
-- The service keys' handlers are in mw.compose, .env and ${VAR} in mw.dotenv, the Lua writer
-- in mw.luawriter; here: the conversion as a whole, the names, the top level and the command.
local yaml      = require "mw.yaml"
local fs        = require "mw.fs"
local paths     = require "mw.path"
local yamlvalue = require "mw.yamlvalue"
local luawriter = require "mw.luawriter"
local dotenv    = require "mw.dotenv"
local compose_keys = require "mw.compose"
local compose_merge = require "mw.compose_merge"
local compose_attach = require "mw.compose_attach"

local M = {}

local NULL = yaml.null
local USAGE = "usage: mw import compose.yaml [-o stack.lua] [--force]"

local is_table, is_map = yamlvalue.is_table, yamlvalue.is_map
local sorted_keys, str_of, bool_of, compact = yamlvalue.sorted_keys, yamlvalue.str_of, yamlvalue.bool_of,
  yamlvalue.compact
local lua_key, render, quote = luawriter.key, luawriter.render, luawriter.quote
local Fatal, fatal, warn, lookup, note = compose_keys.Fatal, compose_keys.fatal, compose_keys.warn,
  compose_keys.lookup, compose_keys.note
local service, FIELD_ORDER = compose_keys.service, compose_keys.FIELD_ORDER
local normpath, join, dirname, basename = paths.normalize, paths.join, paths.dirname, paths.basename

-- Paths ---------------------------------------------------------------------------------------

-- The directory relative paths start from: $PWD when it is absolute, else the process's own.
local function cwd()
  local pwd = os.getenv("PWD")
  if pwd and pwd:sub(1, 1) == "/" then return pwd end
  return fs.cwd() or "/"
end

local function absolute(p, base)
  if p:sub(1, 1) == "/" then return normpath(p) end
  return join(base or cwd(), p)
end

-- A file mw import reads (the compose file, .env, env_file, extends and include): a regular
-- file only, through fs.read, which opens without waiting for a FIFO's writer and checks the
-- opened descriptor, so a FIFO or a device refuses at once instead of hanging the import.
-- -> text | nil, "<path>: <why>", code ("ENOENT" when there is none, "EINVAL" when not a file)
local function read_file(path)
  local text, err, code = fs.read(path)
  if text then return text end
  err = tostring(err)
  local prefix = "cannot read " .. path .. ": "
  if err:sub(1, #prefix) == prefix then err = err:sub(#prefix + 1) end
  return nil, path .. ": " .. err, code
end

-- Names ---------------------------------------------------------------------------------------

local function sanitize(name)
  local s = name:lower():gsub("[^a-z0-9_-]", "-"):gsub("^[^a-z0-9]+", "")
  s = s:sub(1, 63)
  return s ~= "" and s or "service"
end

local function project_name(cx, compose)
  if compose.name ~= nil and compose.name ~= NULL then
    local n = str_of(compose.name) or ""
    if n:find("^[a-z0-9][a-z0-9_.-]*$") and #n <= 63 then return n end
    local s = n:lower():gsub("[^a-z0-9_-]", ""):gsub("^[^a-z0-9]+", ""):sub(1, 63)
    if s == "" then fatal("the compose file's name " .. compact(n) .. " cannot be a stack name") end
    warn(cx, string.format("project name %s becomes stack name '%s'", compact(n), s))
    return s
  end
  local env_name = lookup(cx, "COMPOSE_PROJECT_NAME")
  local base = env_name or basename(cx.dir)
  local s = base:lower():gsub("[^a-z0-9_-]", ""):gsub("^[^a-z0-9]+", ""):sub(1, 63)
  return s ~= "" and s or "stack"
end

-- The top level -------------------------------------------------------------------------------

local TOP_KEYS = { version = true, name = true, services = true, volumes = true, networks = true,
                   secrets = true, configs = true }

-- The top-level x- fields whose anchors are aliased somewhere: they are used (resolved where
-- the alias is), not dropped, so they draw no warning. Read from the text, as the decoded
-- document no longer knows its anchors.
local function used_extensions(text)
  local used = {}
  if type(text) ~= "string" then return used end
  local blocks, cur = {}, nil
  for line in (text .. "\n"):gmatch("([^\n]*)\n") do
    local key = line:match("^([^%s#][^:]*):")
    if key then
      cur = key:match("^[\"']?(x%-[^\"']+)[\"']?$")
      if cur then blocks[cur] = {} end
    end
    if cur then
      for a in line:gmatch("&([%w_.-]+)") do blocks[cur][#blocks[cur] + 1] = a end
    end
  end
  for k, anchors in pairs(blocks) do
    for _, a in ipairs(anchors) do
      local pat = "%*" .. a:gsub("%p", "%%%0") .. "%f[^%w_.-]"
      if text:find(pat) then used[k] = true end
    end
  end
  return used
end

local NET_DONE = setmetatable({}, { __mode = "k" })

-- A top-level compose network -> the stack's network table (ordered) or nil; records in
-- NET_DONE which of its keys it translated. ipam.config[] gives one subnet (and gateway).
local function stack_network(n, d, ext)
  local kv, done = {}, {}
  NET_DONE[d] = done
  if ext then
    kv[#kv + 1] = { "external", true }
    local name = str_of(d.name)
    if name and name ~= n then kv[#kv + 1] = { "name", name } end
    return luawriter.ordered(kv)
  end
  local subnet, gateway = compose_attach.ipam_subnet(d)
  if subnet then
    kv[#kv + 1] = { "subnet", subnet }
    if gateway then kv[#kv + 1] = { "gateway", gateway } end
    done.ipam = true
  end   -- else kept as a comment with the note "'ipam' has no equivalent"
  if bool_of(d.internal) ~= nil then
    if bool_of(d.internal) then kv[#kv + 1] = { "internal", true } end
    done.internal = true
  end
  if #kv == 0 then return nil end
  return luawriter.ordered(kv)
end

local function top_notes(cx, compose)
  local notes = {}
  local function add(kind, name, key, value, why)
    notes[#notes + 1] = string.format("%s %s: %s: %s  (no equivalent in mw%s)", kind, name, key, compact(value),
      why and ("; " .. why) or "")
    warn(cx, string.format("%s '%s': '%s' has no equivalent%s (kept as a comment)", kind, name, key,
      why and (": " .. why) or ""))
  end
  for _, kind in ipairs { "volumes", "networks" } do
    local defs = compose[kind]
    if defs ~= nil and defs ~= NULL then
      if not is_map(defs) then fatal("top-level '" .. kind .. "' must be a mapping") end
      local single = kind == "volumes" and "volume" or "network"
      for _, n in ipairs(sorted_keys(defs)) do
        local d = defs[n]
        local ext = is_map(d) and bool_of(d.external) == true
        if is_map(d) and kind == "networks" then
          -- subnet, gateway, internal, external and its name become the stack's `networks`
          local def = stack_network(n, d, ext)
          if def then cx.stack_networks[#cx.stack_networks + 1] = { n, def } end
        end
        if is_map(d) then
          for _, k in ipairs(sorted_keys(d)) do
            local x = d[k]
            -- translated: an external network or volume is joined or mounted by its name; a
            -- network's subnet and internal flag by stack_network
            local translated = (ext and (k == "external" or k == "name"))
              or (kind == "networks" and NET_DONE[d] and NET_DONE[d][k])
            if translated then
              goto next_key
            elseif k == "name" then
              add(single, n, k, x, single == "volume" and "mw names it <stack>_" .. n or nil)
            elseif not (k == "driver" and (x == "local" or x == "bridge"))
                and not (k == "external" and bool_of(x) == false) then
              add(single, n, k, x)
            end
            ::next_key::
          end
        end
      end
    end
  end
  local secrets = compose.secrets
  if secrets ~= nil and secrets ~= NULL then
    if not is_map(secrets) then fatal("top-level 'secrets' must be a mapping") end
    for _, n in ipairs(sorted_keys(secrets)) do
      local d = secrets[n]
      if is_map(d) then
        for _, k in ipairs(sorted_keys(d)) do
          if k ~= "file" then add("secret", n, k, d[k], k == "environment" and "mw reads secrets from files" or nil) end
        end
      end
    end
  end
  local configs = compose.configs
  if configs ~= nil and configs ~= NULL then
    if not is_map(configs) then fatal("top-level 'configs' must be a mapping") end
    for _, n in ipairs(sorted_keys(configs)) do
      local d = configs[n]
      if is_map(d) then
        for _, k in ipairs(sorted_keys(d)) do
          if k == "environment" then
            add("config", n, k, d[k], "mw mounts configs from files; write the value to one")
          elseif k == "external" and bool_of(d[k]) then
            add("config", n, k, d[k], "mw mounts configs from files, not from a swarm's configs")
          elseif k == "content" and not cx.write_files then
            add("config", n, k, "...", "written to a file only with mw import -o")
          elseif k ~= "file" and k ~= "content" and not (k == "external" and bool_of(d[k]) == false) then
            add("config", n, k, d[k])
          end
        end
      end
    end
  end
  local used = used_extensions(cx.text)
  for _, k in ipairs(sorted_keys(compose)) do
    if not TOP_KEYS[k] and not used[k] then
      notes[#notes + 1] = string.format("%s: %s  (no equivalent in mw%s)", k, compact(compose[k]),
        k:sub(1, 2) == "x-" and "; an extension field" or "")
      warn(cx, string.format("top-level '%s' has no equivalent (kept as a comment)", k))
    end
  end
  return notes
end

local function wrap(text, prefix, width)
  local lines, cur = {}, prefix
  for word in text:gmatch("%S+") do
    if #cur + #word + 1 > width and cur ~= prefix then
      lines[#lines + 1] = cur
      cur = prefix
    end
    cur = cur .. (cur == prefix and "" or " ") .. word
  end
  lines[#lines + 1] = cur
  return table.concat(lines, "\n")
end

local function render_component(comp)
  local base = comp.base
  local lines = { "    " .. lua_key(comp.name) .. " = " .. (base and (base.fn .. " ") or "") .. "{" }
  if comp.name ~= comp.orig then lines[#lines + 1] = "      -- compose service " .. compact(comp.orig) end
  if comp.included then lines[#lines + 1] = "      -- from " .. comp.included .. " (include)" end
  for _, f in ipairs(FIELD_ORDER) do
    local v = comp.fields[f]
    if v ~= nil then
      local text = render(v, 6)
      -- what the base gives alike is left to it
      if not (base and base.fields[f] ~= nil and render(base.fields[f], 6) == text) then
        lines[#lines + 1] = "      " .. f .. " = " .. text .. ","
      end
    end
  end
  for _, n in ipairs(comp.notes) do
    lines[#lines + 1] = "      -- compose: " .. n:gsub("[\r\n]", " ")
  end
  lines[#lines + 1] = "    },"
  return table.concat(lines, "\n")
end

-- A base a service extends, as a function of the fields the extending component sets: the
-- base's fields under them (a plain override: what compose merges, such as env, is written
-- whole in the component when it differs).
local function render_base(b)
  local lines = { string.format("-- compose service %s%s, which %s extend%s: its fields under theirs",
    compact(b.service), b.file and (" in " .. b.file) or "", table.concat(b.users, ", "), #b.users == 1 and "s" or ""),
    "local function " .. b.fn .. "(c)", "  local base = {" }
  for _, f in ipairs(FIELD_ORDER) do
    local v = b.fields[f]
    if v ~= nil then
      local text = render(v, 4)
      if f == "env" then text = text:gsub("\n  ", "\n") end    -- written for a component's depth
      lines[#lines + 1] = "    " .. f .. " = " .. text .. ","
    end
  end
  lines[#lines + 1] = "  }"
  lines[#lines + 1] = "  for k, v in pairs(c) do base[k] = v end"
  lines[#lines + 1] = "  return base"
  lines[#lines + 1] = "end"
  return table.concat(lines, "\n")
end

-- The fields of a base service, converted quietly (its keys warn through the components that
-- extend it); one without image or build is fine here: the components give theirs.
local function base_fields(cx, name, svc)
  local quiet = setmetatable({ warnings = {}, warned = {} }, { __index = cx })
  local s = {}
  for k, v in pairs(svc) do s[k] = v end
  local dummy = s.image == nil and s.build == nil
  if dummy then s.image = "base" end
  s.depends_on = nil
  local comp = service(quiet, name, name, s)
  if dummy then comp.fields.image = nil end
  return comp.fields
end

local function convert(compose, opts, warnings)
  local cx = {
    warnings = warnings, warned = {}, uses = {},
    dir = opts.dir or ".", out_dir = opts.out_dir or opts.dir or ".",
    baked = {}, read_paths = {}, text = opts.text,
  }
  local read = opts.read or read_file
  -- sources whose values may reach the stack file (read_paths decide its mode)
  cx.read = function(p)
    local text, err, code = read(p)
    if text then cx.read_paths[#cx.read_paths + 1] = p end
    return text, err, code
  end
  -- env_file: read to check it, never copied (the stack file names it: `env_file`)
  cx.read_only = read
  local environ = opts.env
  cx.getenv = environ and function(k) return environ[k] end or os.getenv
  cx.same_dir = normpath(cx.dir) == normpath(cx.out_dir)
  if not cx.same_dir then
    cx.dir, cx.out_dir = absolute(cx.dir, opts.cwd), absolute(cx.out_dir, opts.cwd)
  end

  if not is_table(compose) or compose == NULL or not is_map(compose) or next(compose) == nil then
    local what = compose == NULL and "an empty document"
      or type(compose) == "table" and (next(compose) == nil and "an empty mapping" or "a list")
      or ("a " .. type(compose))
    fatal("not a compose file: expected a mapping with 'services', got " .. what)
  end
  compose = compose_merge.resolve(cx, compose)
  local services = compose.services
  if services == nil or services == NULL or (is_table(services) and next(services) == nil) then
    fatal("no services: a compose file needs a 'services' mapping with at least one service")
  end
  if not is_map(services) then fatal("'services' must be a mapping of name: service") end

  -- .env beside the compose file feeds interpolation (the process environment wins).
  cx.dotenv, cx.dotenv_path = {}, join(cx.dir, ".env")
  local dot, dot_err, dot_code = cx.read(cx.dotenv_path)
  -- absent is fine; there but not a regular file (a FIFO) is one clear line, not a hang
  if not dot and dot_code and dot_code ~= "ENOENT" then
    local why = tostring(dot_err)
    if why:sub(1, #cx.dotenv_path + 2) == cx.dotenv_path .. ": " then why = why:sub(#cx.dotenv_path + 3) end
    fatal(".env: " .. why)
  end
  if dot then
    local entries, err = dotenv.parse(dot)
    if not entries then fatal(".env: " .. err) end
    for _, e in ipairs(entries) do if e[2] ~= nil then cx.dotenv[e[1]] = e[2] end end
  end
  local vars = { lookup = function(name) return lookup(cx, name) end, warn = function(msg) warn(cx, msg) end,
                 fail = fatal }
  compose = dotenv.interpolate_tree(vars, compose, "")
  local function interpolate_service(svc) return dotenv.interpolate_tree(vars, svc, "") end
  services = compose.services

  cx.volumes = is_map(compose.volumes) and compose.volumes or {}
  cx.networks = is_map(compose.networks) and compose.networks or {}
  cx.secrets = is_map(compose.secrets) and compose.secrets or {}
  cx.configs = is_map(compose.configs) and compose.configs or {}
  cx.write_files, cx.files = opts.write_files, {}

  local names, taken, order = {}, {}, sorted_keys(services)
  for _, orig in ipairs(order) do
    local n = sanitize(orig)
    if n ~= orig or taken[n] then
      local base, i = n, 2
      while taken[n] do n = base:sub(1, 60) .. "-" .. i; i = i + 1 end
      warn(cx, string.format("service '%s' becomes component '%s' (component names are lowercase letters, " ..
        "digits, '_' and '-')", orig, n))
    end
    taken[n] = true
    names[orig] = n
  end

  local comps = {}
  for _, orig in ipairs(order) do comps[#comps + 1] = service(cx, orig, names[orig], services[orig]) end
  -- extends: one function per base, named after it
  local bases, base_list, fn_taken = {}, {}, {}
  for _, c in ipairs(comps) do
    local e = cx.extended[c.orig]
    if e then
      local id = (e.file or "") .. "\0" .. e.service
      local b = bases[id]
      if not b then
        local fn = "base_" .. sanitize(e.service):gsub("%-", "_")
        local n, i = fn, 2
        while fn_taken[n] do n = fn .. "_" .. i; i = i + 1 end
        fn_taken[n] = true
        b = { fn = n, service = e.service, file = e.file, users = {},
              fields = base_fields(cx, e.service, interpolate_service(e.base)) }
        bases[id] = b
        base_list[#base_list + 1] = b
      end
      b.users[#b.users + 1] = c.name
      c.base = b
    end
    c.included = cx.included[c.orig]
  end
  table.sort(comps, function(a, b) return a.name < b.name end)
  local by_name = {}
  for _, c in ipairs(comps) do by_name[c.orig] = c end

  for _, c in ipairs(comps) do
    if c.net_share then c.fields.network_mode = "service:" .. (names[c.net_share] or sanitize(c.net_share)) end
  end
  -- depends_on last: "healthy" needs the other side's heartbeat, known only now.
  for _, c in ipairs(comps) do
    if c.deps and #c.deps > 0 then
      local all_started, t, list = true, {}, {}
      for _, d in ipairs(c.deps) do
        local target = by_name[d.name]
        local n = names[d.name] or sanitize(d.name)
        if d.cond == "healthy" and target and not target.fields.heartbeat then
          note(c, string.format("depends_on %s: condition service_healthy  (%s has no healthcheck mw can run; " ..
            "using \"started\")", d.name, d.name))
          warn(cx, string.format("service %s: depends on %s being healthy, but %s has no healthcheck mw can run; " ..
            "using \"started\"", c.orig, d.name, d.name))
          d.cond = "started"
        end
        -- what compose waits to complete successfully runs to completion: a job
        if d.cond == "completed" and target then target.fields.job = true end
        if d.cond ~= "started" then all_started = false end
        t[n] = d.cond
        list[#list + 1] = n
      end
      c.fields.depends_on = all_started and list or t
    end
  end

  cx.stack_networks = {}
  local notes = top_notes(cx, compose)
  local stack_name = project_name(cx, compose)

  local out = {}
  out[#out + 1] = "-- Imported from " .. (opts.file or "compose.yaml") .. " by `mw import`; check it with `mw check`."
  out[#out + 1] = "-- What mw has no equivalent for is kept in comments marked \"compose:\"."
  out[#out + 1] = "-- Named volumes are <stack>_<name> on the engine, as compose names them, so this stack"
  out[#out + 1] = "-- uses the volumes of compose project " .. quote(stack_name) .. "."
  local defaulted = {}
  for _, c in ipairs(comps) do if c.fields.restart == nil then defaulted[#defaulted + 1] = c.name end end
  if #defaulted > 0 then
    out[#out + 1] = wrap("Without 'restart' compose never restarts a service; here " .. table.concat(defaulted, ", ") ..
      " get" .. (#defaulted == 1 and "s" or "") .. " mw's default policy (on_failure with backoff).", "-- ", 96)
  end
  if compose.version ~= nil then
    out[#out + 1] = "-- compose: version: " .. compact(compose.version) .. "  (informational; compose ignores it too)"
  end
  local requires = {}
  if cx.uses.policy then requires[#requires + 1] = 'local policy  = require "mw.policy"' end
  if cx.uses.backoff then requires[#requires + 1] = 'local backoff = require "mw.backoff"' end
  if #requires > 0 then
    out[#out + 1] = ""
    for _, r in ipairs(requires) do out[#out + 1] = r end
  end
  out[#out + 1] = ""
  for _, n in ipairs(notes) do out[#out + 1] = "-- compose: " .. n:gsub("[\r\n]", " ") end
  if #notes > 0 then out[#out + 1] = "" end
  for _, n in ipairs(cx.include_notes) do out[#out + 1] = "-- compose: " .. n:gsub("[\r\n]", " ") end
  if #cx.include_notes > 0 then out[#out + 1] = "" end
  for _, b in ipairs(base_list) do
    out[#out + 1] = render_base(b)
    out[#out + 1] = ""
  end
  out[#out + 1] = "return {"
  out[#out + 1] = "  name = " .. quote(stack_name) .. ","
  if #cx.stack_networks > 0 then
    out[#out + 1] = "  networks = " .. render(luawriter.ordered(cx.stack_networks), 2) .. ","
  end
  out[#out + 1] = "  components = {"
  for i, c in ipairs(comps) do
    if i > 1 then out[#out + 1] = "" end
    out[#out + 1] = render_component(c)
  end
  out[#out + 1] = "  },"
  out[#out + 1] = "}"
  local from = {}
  for i, b in ipairs(cx.baked) do
    local list = {}
    for n in pairs(b.names) do list[#list + 1] = n end
    table.sort(list)
    from[i] = { path = b.path, names = list }
  end
  return table.concat(out, "\n") .. "\n", { env_values = from, read = cx.read_paths, files = cx.files }
end

-- import.convert(compose_table, opts) -> lua_source, warnings, sources | nil, message, warnings
-- sources: read (the env files read: .env and env_file paths), env_values ({ path, names }
-- for each env file whose values are written into the source).
-- opts: file (name for the header), dir (the compose file's directory), out_dir (where the
-- stack file goes; default dir), env (a table instead of the process environment), read
-- (function(path) -> text | nil, err, for env files), cwd (for relative dirs).
function M.convert(compose, opts)
  local warnings = {}
  local ok, src, sources = pcall(convert, compose, opts or {}, warnings)
  if ok then return src, warnings, sources end
  if getmetatable(src) == Fatal then return nil, src.msg, warnings end
  error(src, 0)
end

M.parse_dotenv = dotenv.parse
M.go_seconds = compose_keys.go_seconds
-- The bounds on interpolation (mw.dotenv holds them).
M.MAX_NESTING, M.MAX_EXPANDED = dotenv.MAX_NESTING, dotenv.MAX_EXPANDED

-- The command -----------------------------------------------------------------------------------

local function exists(p)
  local f = io.open(p, "rb")
  if f then f:close() return true end
  return false
end

function M.main(args, cli)
  local function err(msg) io.stderr:write("mw import: ", msg, "\n") end
  local o, rest = cli.parse(args, { o = "value", output = "value", force = true })
  if not o then err(rest .. " (" .. USAGE .. ")") return 2 end
  local file = rest[1]
  if not file or #rest > 1 then err(USAGE) return 2 end
  local out = o.o or o.output
  if o.o and o.output then err("give -o or --output, not both") return 2 end
  if out and exists(out) and not o.force then
    err(out .. " already exists (use --force to overwrite it)")
    return 2
  end

  local text, rerr = read_file(file)
  if not text then err("cannot read " .. tostring(rerr)) return 2 end     -- a FIFO too: refused, no wait
  local doc, yerr = yaml.decode(text)
  if doc == nil then err(file .. ": " .. yerr) return 2 end

  local here = cwd()
  local dir = absolute(dirname(file), here)
  local out_path = out and absolute(out, here) or join(dir, "stack.lua")
  local shown = out or (dirname(file) == "." and "stack.lua" or (dirname(file) .. "/stack.lua"))
  local src, cerr, third = M.convert(doc, {
    file = basename(file), dir = dir, out_dir = dirname(out_path), cwd = here, write_files = out ~= nil,
    text = text,
  })
  local warnings, sources = third, nil
  if src then warnings, sources = cerr, third end
  for _, w in ipairs(warnings) do err(w) end
  if not src then err(file .. ": " .. cerr) return 2 end

  -- Configs given as content: files beside the stack file, written before the check reads them
  -- and removed again if it fails.
  local written = {}
  local function unwrite() for _, p in ipairs(written) do os.remove(p) end end
  if sources and next(sources.files) then
    local rels = {}
    for rel in pairs(sources.files) do rels[#rels + 1] = rel end
    table.sort(rels)
    for _, rel in ipairs(rels) do
      local p = join(dirname(out_path), rel)
      if exists(p) and not o.force and read_file(p) ~= sources.files[rel] then
        unwrite()
        err(p .. " already exists (use --force to overwrite it)")
        return 2
      end
      fs.mkdirp(dirname(p))
      local ok, werr = fs.write_atomic(p, sources.files[rel], 420)
      if not ok then unwrite(); err("cannot write " .. p .. ": " .. tostring(werr)) return 1 end
      written[#written + 1] = p
      err("wrote " .. p .. " (a config's content)")
    end
  end

  local stack = require "mw.stack"
  local s, lerr = stack.load(shown, { source = src, cwd = here })
  if not s then
    unwrite()
    err("the result would not pass mw check: " .. lerr)
    return 2
  end

  local function display(p)
    if p:sub(1, #here + 1) == here .. "/" then return p:sub(#here + 2) end
    return p
  end
  -- Values from env files end up in the stack file as text: say which, by name only.
  for _, b in ipairs(sources.env_values) do
    err(string.format("values from %s written into %s: %s", display(b.path), out or "the output",
      table.concat(b.names, ", ")))
  end

  if not out then
    io.stdout:write(src)
    return 0
  end
  -- The stack file may hold what the compose and env files hold, so it is no more readable than
  -- the most private of them: 0644 masked by each one's mode (a 0600 .env gives 0600; the
  -- umask may narrow it further). Its owner keeps read and write, to edit it and import over it.
  local mode, private = 420, {}
  local read = { absolute(file, here) }
  for _, p in ipairs(sources.read) do read[#read + 1] = p end
  for _, p in ipairs(read) do
    local st = fs.stat(fs.realpath(p) or p)
    if st and (mode & st.mode) | 384 ~= mode | 384 then
      mode = mode & st.mode
      private[#private + 1] = display(p)
    end
  end
  mode = mode | 384
  local ok, werr = fs.write_atomic(out, src, mode)
  if not ok then err("cannot write " .. out .. ": " .. tostring(werr)) return 1 end
  err(string.format("wrote %s: %d component%s, %d warning%s%s", out, #s.order, #s.order == 1 and "" or "s",
    #warnings, #warnings == 1 and "" or "s",
    mode ~= 420 and string.format("; mode %04o, as private as %s", mode, table.concat(private, ", ")) or ""))
  return 0
end

return M
