-- Checks and normalizes the fields of a component: validate.field[name](ctx, path, value) for
-- every field listed in mw.fields, and validate.component(ctx, name, raw) for a whole one.
local sandbox  = require "mw.sandbox"
local policy   = require "mw.policy"
local secret   = require "mw.secret"
local owner    = require "mw.owner"
local paths    = require "mw.path"
local fs       = require "mw.fs"
local core     = require "mw.core"
local checks   = require "mw.check"
local fields_table = require "mw.fields"
local envfile  = require "mw.envfile"

local validate = {}

local normpath, join = paths.normalize, paths.join
-- The value checkers (mw.check); each returns the normalized value or fails.
local fail, sub, keyname, show = checks.fail, checks.sub, checks.keyname, checks.show
local printable, cut, file_kind, is_dir = checks.printable, checks.cut, checks.file_kind, checks.is_dir
local KINDS, fields, must, text = checks.KINDS, checks.fields, checks.must, checks.text
local nonempty, scalar, boolean, integer = checks.nonempty, checks.scalar, checks.boolean, checks.integer
local dur, bytes, entries, list, map = checks.dur, checks.bytes, checks.entries, checks.list, checks.map
local words, is_ip, hostname_ok = checks.words, checks.is_ip, checks.hostname_ok

-- The seed's heartbeat: what `heartbeat = true` means and what a partial table falls back to.
local HEARTBEAT_DEFAULTS = { port = 8089, path = "/debug/vars", interval = 0.5, timeout = 1,
                             misses = 3, grace = 10 }
validate.HEARTBEAT_DEFAULTS = HEARTBEAT_DEFAULTS

local CAPABILITIES = {}
for c in ([[ALL AUDIT_CONTROL AUDIT_READ AUDIT_WRITE BLOCK_SUSPEND BPF CHECKPOINT_RESTORE CHOWN
  DAC_OVERRIDE DAC_READ_SEARCH FOWNER FSETID IPC_LOCK IPC_OWNER KILL LEASE LINUX_IMMUTABLE
  MAC_ADMIN MAC_OVERRIDE MKNOD NET_ADMIN NET_BIND_SERVICE NET_BROADCAST NET_RAW PERFMON SETFCAP
  SETGID SETPCAP SETUID SYS_ADMIN SYS_BOOT SYS_CHROOT SYS_MODULE SYS_NICE SYS_PACCT SYS_PTRACE
  SYS_RAWIO SYS_RESOURCE SYS_TIME SYS_TTY_CONFIG SYSLOG WAKE_ALARM]]):gmatch("%S+") do
  CAPABILITIES[c] = true
end

local SIGNALS = {}
for s in ([[HUP INT QUIT ILL TRAP ABRT IOT BUS FPE KILL USR1 SEGV USR2 PIPE ALRM TERM STKFLT
  CHLD CONT STOP TSTP TTIN TTOU URG XCPU XFSZ VTALRM PROF WINCH IO POLL PWR SYS RTMIN RTMAX]]):gmatch("%S+") do
  SIGNALS[s] = true
end

local ULIMITS = {}
for u in ([[core cpu data fsize locks memlock msgqueue nice nofile nproc rss rtprio rttime
  sigpending stack]]):gmatch("%S+") do
  ULIMITS[u] = true
end

-- Component fields ----------------------------------------------------------------------------

local field = {}

local IMAGE_HINT = ' (use e.g. "nginx:1.25", "redis", "localhost:5000/app:dev")'

function field.image(_, path, v)
  nonempty(path, v, "a string (an image name such as \"nginx:1.25\")")
  if #v > 255 or not v:find("^[%w][%w._/:@+-]*$") then
    fail(path, "bad image reference " .. show(v) .. IMAGE_HINT)
  end
  local name = v:gsub("@.*$", "")
  local tag = name:match(":([^/:]*)$")
  local repo = tag and name:sub(1, #name - #tag - 1) or name
  if repo == "" or repo ~= repo:lower() then
    fail(path, "bad image reference " .. show(v) .. ": the repository name must be lowercase")
  end
  if tag and not tag:find("^[%w_][%w_.-]*$") then fail(path, "bad image tag in " .. show(v) .. IMAGE_HINT) end
  return v
end

function field.build(ctx, path, v)
  if type(v) == "string" then v = { context = v } end
  if type(v) ~= "table" then
    must(path, v, "a table { context = \"dir\", dockerfile = ..., args = ..., target = ... } or a directory")
  end
  fields(path, v, { "context", "dockerfile", "args", "target", "pull" })
  local context = rawget(v, "context")
  if context == nil then fail(path, "needs 'context' (a directory, relative to the stack file)") end
  nonempty(sub(path, "context"), context)
  local dir = join(ctx.dir, context)
  if not is_dir(dir) then
    fail(sub(path, "context"), "build context " .. show(context) .. " is not a directory (relative to the stack file)")
  end
  local b = { context = dir, args = {} }
  local df = rawget(v, "dockerfile")
  if df ~= nil then nonempty(sub(path, "dockerfile"), df) end
  b.dockerfile = join(dir, df or "Dockerfile")
  local dk, dst = file_kind(b.dockerfile)
  if not dk then
    fail(sub(path, "dockerfile"), string.format("no Dockerfile at %s (relative to the build context)",
      show(df or "Dockerfile")))
  elseif dk ~= "file" then
    fail(sub(path, "dockerfile"), string.format("Dockerfile %s is %s, not a regular file", show(df or "Dockerfile"),
      KINDS[dk] or KINDS.other))
  elseif dst.size > checks.MAX_DOCKERFILE then
    fail(sub(path, "dockerfile"), string.format("Dockerfile %s is larger than 1 MiB", show(df or "Dockerfile")))
  end
  -- Not followed through a link, as the build reads it (core/tar.c).
  local ist = fs.stat(join(dir, ".dockerignore"))
  if ist and ist.type ~= "file" then
    fail(sub(path, "context"), string.format(".dockerignore in build context %s is %s; mw reads only a regular file",
      show(context), ist.type == "link" and "a symbolic link" or KINDS[ist.type] or KINDS.other))
  elseif ist and ist.size > checks.MAX_IGNORE then
    fail(sub(path, "context"), string.format(".dockerignore in build context %s is larger than 1 MiB", show(context)))
  end
  local args = rawget(v, "args")
  if args ~= nil then
    for _, e in ipairs(map(sub(path, "args"), args)) do
      local p = sub(sub(path, "args"), e[1])
      nonempty(p, e[1])
      b.args[e[1]] = scalar(p, e[2])
    end
  end
  local target = rawget(v, "target")
  if target ~= nil then
    nonempty(sub(path, "target"), target)
    if not target:find("^[%w][%w_.-]*$") then fail(sub(path, "target"), "bad build stage name " .. show(target)) end
    b.target = target
  end
  local pull = rawget(v, "pull")
  if pull ~= nil then b.pull = boolean(sub(path, "pull"), pull) or nil end
  return b
end

-- pull = "missing" (the default: pull only an image the engine lacks), "always" (pull at
-- every bring-up and reload that creates the component), "never" (fail when it is missing).
local PULL = { missing = true, always = true, never = true }
function field.pull(_, path, v)
  local s = nonempty(path, v, "\"missing\", \"always\" or \"never\"")
  if not PULL[s] then fail(path, "must be \"missing\", \"always\" or \"never\", got " .. show(s)) end
  return s
end

function field.command(_, path, v) return words(path, v) end
function field.entrypoint(_, path, v) return words(path, v) end

-- The entries of a field given as a map (key = value) or as a list of "key<sep>value" strings
-- (the compose form, so imported files stay readable; both may be mixed): checks the table and
-- splits each string by pattern (two captures). -> { { key, value, path of a list item | nil } ... }
-- form: what the field must be; item: the string form, e.g. "NAME=value"; hint: after it.
local function keyed_entries(path, v, form, item, hint, pattern)
  if type(v) ~= "table" then must(path, v, form) end
  local items, named = entries(path, v)
  for _, e in ipairs(items) do
    local p = sub(path, e[1])
    local s = text(p, e[2], "a string \"" .. item .. "\"" .. hint)
    local k, val = s:match(pattern)
    if not k then fail(p, "must look like \"" .. item .. "\", got " .. show(s)) end
    named[#named + 1] = { k, val, p }
  end
  return named
end

function field.env(_, path, v)
  local out = {}
  local named = keyed_entries(path, v, "a table of NAME = value", "NAME=value", " (or use NAME = value)",
    "^([^=]+)=(.*)$")
  for _, e in ipairs(named) do
    local p = e[3] or sub(path, e[1])
    if not e[1]:find("^[%w_][%w_.-]*$") then
      fail(e[3] or path, "bad variable name '" .. keyname(e[1]) .. "' (use letters, digits, '_', '.', '-')")
    end
    if out[e[1]] then fail(p, "variable '" .. keyname(e[1]) .. "' is set twice") end
    out[e[1]] = scalar(p, e[2], true)
  end
  return out
end

-- env_file = ".env" or { ".env", "app.env" }: read now (a reload reads them again), each value
-- kept as a secret so that nothing mw prints shows it. -> { { path, vars } ... }
function field.env_file(ctx, path, v)
  if type(v) == "string" then v = { v } end
  local out, seen = {}, {}
  for _, e in ipairs(list(path, v, "of env file paths (relative to the stack file)")) do
    local p = sub(path, e[1])
    local file = nonempty(p, e[2], "a path to an env file, relative to the stack file")
    local abs = join(ctx.dir, file)
    if seen[abs] then fail(p, "env file " .. show(file) .. " is listed twice") end
    seen[abs] = true
    -- watched for changes like a required Lua file, even when it is missing
    if ctx.required then ctx.required[#ctx.required + 1] = abs end
    local vars, why = envfile.read(abs)
    if not vars then
      fail(p, "env file " .. show(file) .. " " .. why .. (why == "not found" and " (relative to the stack file)" or ""))
    end
    local kept = {}
    for k, val in pairs(vars) do
      if not k:find("^[%w_][%w_.-]*$") then fail(p, "env file " .. show(file) .. ": bad variable name '" .. keyname(k) .. "'") end
      kept[k] = secret(val)
    end
    out[#out + 1] = { path = abs, vars = kept }
  end
  return out
end

function field.job(_, path, v) return boolean(path, v) end

-- profiles = { "debug" }: the component runs only when one of them is active (mw run --profile).
function field.profiles(_, path, v)
  if type(v) == "string" then v = { v } end
  local out, seen = {}, {}
  for _, e in ipairs(list(path, v, "of profile names")) do
    local p = sub(path, e[1])
    local name = nonempty(p, e[2], "a profile name")
    if not name:find("^[%w][%w_.-]*$") or #name > 64 then
      fail(p, "bad profile name " .. show(name) .. " (use letters, digits, '_', '.', '-')")
    end
    if not seen[name] then seen[name] = true out[#out + 1] = name end
  end
  return out
end

function field.depends_on(_, path, v)
  if type(v) == "string" then v = { v } end
  if type(v) ~= "table" then
    must(path, v, "a list of component names or a table of name = \"started\"|\"healthy\"|\"completed\"")
  end
  local out = {}
  local items, named = entries(path, v)
  for _, e in ipairs(items) do
    local name = nonempty(sub(path, e[1]), e[2], "a component name")
    if out[name] then fail(path, "lists '" .. keyname(name) .. "' twice") end
    out[name] = "started"
  end
  for _, e in ipairs(named) do
    local cond = e[2]
    if cond == true then cond = "started" end
    if cond ~= "started" and cond ~= "healthy" and cond ~= "completed" then
      fail(sub(path, e[1]), "condition must be \"started\", \"healthy\" or \"completed\", got " .. show(cond))
    end
    if out[e[1]] then fail(path, "lists '" .. keyname(e[1]) .. "' twice") end
    out[e[1]] = cond
  end
  return out
end

function field.heartbeat(_, path, v)
  if v == false then return false end
  local hb = { kind = "http" }
  for k, d in pairs(HEARTBEAT_DEFAULTS) do hb[k] = d end
  if v == true then return hb end
  if type(v) ~= "table" then must(path, v, "true, false or a table { port =, path =, interval =, ... }") end
  fields(path, v, { "port", "path", "tcp", "exec", "interval", "timeout", "misses", "grace", "check", "send", "expect" })
  for _, f in ipairs { "send", "expect" } do
    local x = rawget(v, f)
    if x ~= nil then
      if rawget(v, "tcp") == nil then fail(sub(path, f), "is for TCP heartbeats ({ tcp = port, send =, expect = })") end
      nonempty(sub(path, f), x)
      hb[f] = x
    end
  end
  local tcp, exec = rawget(v, "tcp"), rawget(v, "exec")
  if tcp ~= nil and exec ~= nil then fail(path, "give one of 'tcp' and 'exec', not both", "exec") end
  if tcp ~= nil or exec ~= nil then
    local kind = tcp ~= nil and "tcp" or "exec"
    for _, f in ipairs { "port", "path", "check" } do
      if rawget(v, f) ~= nil then
        fail(path, string.format("'%s' is for HTTP heartbeats; a %s heartbeat cannot have it", f, kind), f)
      end
    end
    hb.kind, hb.port, hb.path = kind, nil, nil
    if tcp ~= nil then hb.port = integer(sub(path, "tcp"), tcp, 1, 65535) end
    if exec ~= nil then hb.exec = words(sub(path, "exec"), exec) end
  else
    local port = rawget(v, "port")
    if port ~= nil then hb.port = integer(sub(path, "port"), port, 1, 65535) end
    local p = rawget(v, "path")
    if p ~= nil then
      nonempty(sub(path, "path"), p)
      if p:sub(1, 1) ~= "/" or p:find("[%s%c]") then
        fail(sub(path, "path"), "must be a URL path starting with '/', got " .. show(p))
      end
      hb.path = p
    end
    local check = rawget(v, "check")
    if check ~= nil then
      if type(check) ~= "function" then must(sub(path, "check"), check, "a function(body) returning ok, why") end
      hb.check = check
    end
  end
  for _, f in ipairs { "interval", "timeout" } do
    local x = rawget(v, f)
    if x ~= nil then hb[f] = dur(sub(path, f), x, true) end
  end
  local grace = rawget(v, "grace")
  if grace ~= nil then hb.grace = dur(sub(path, "grace"), grace) end
  local misses = rawget(v, "misses")
  if misses ~= nil then hb.misses = integer(sub(path, "misses"), misses, 1, 1000) end
  return hb
end

local SHORT_POLICIES = { always = "always", on_failure = "on_failure", ["on-failure"] = "on_failure",
                         ["unless-stopped"] = "always", never = "never", no = "never" }

function field.restart(_, path, v)
  if v == policy.always or v == policy.on_failure or v == policy.never then
    fail(path, "a policy constructor must be called: policy.on_failure { ... }")
  end
  if policy.is(v) or type(v) == "function" then return v end
  if type(v) == "string" and SHORT_POLICIES[v] then return policy[SHORT_POLICIES[v]] {} end
  must(path, v, "a policy (policy.on_failure{...}, policy.always{...}, policy.never{}) or a function(failure)")
end

local PORT_HINT = ' (use e.g. "8080:80", "127.0.0.1:5432:5432", "53:53/udp")'

local function port_number(path, s, v)
  if type(s) == "number" then return integer(path, s, 1, 65535) end
  if s:find("%-") then fail(path, "port ranges are not supported in " .. show(v) .. "; list each port") end
  local n = s:find("^%d+$") and tonumber(s)
  if not n or n < 1 or n > 65535 then fail(path, "bad port " .. show(v) .. PORT_HINT) end
  return math.tointeger(n)
end

local function port(path, v)
  if type(v) == "number" then
    return { container = integer(path, v, 1, 65535), ip = "0.0.0.0", proto = "tcp" }
  end
  if type(v) == "table" then
    fields(path, v, { "host", "container", "ip", "proto" })
    local p = { ip = "0.0.0.0", proto = "tcp" }
    local c = rawget(v, "container")
    if c == nil then fail(path, "needs 'container' (the port inside the container)") end
    p.container = integer(sub(path, "container"), c, 1, 65535)
    local h = rawget(v, "host")
    if h ~= nil then p.host = integer(sub(path, "host"), h, 1, 65535) end
    local ip = rawget(v, "ip")
    if ip ~= nil then
      text(sub(path, "ip"), ip)
      if not is_ip(ip) then fail(sub(path, "ip"), "bad IP address " .. show(ip)) end
      p.ip = ip
    end
    local proto = rawget(v, "proto")
    if proto ~= nil and proto ~= "tcp" and proto ~= "udp" and proto ~= "sctp" then
      fail(sub(path, "proto"), "must be \"tcp\", \"udp\" or \"sctp\", got " .. show(proto))
    end
    p.proto = proto or "tcp"
    return p
  end
  if type(v) ~= "string" then must(path, v, "a string like \"8080:80\", a port number or a table") end
  text(path, v)
  local s, proto = v, "tcp"
  local body, pr = s:match("^(.*)/(%w+)$")
  if body then
    if pr ~= "tcp" and pr ~= "udp" and pr ~= "sctp" then fail(path, "bad protocol in " .. show(v) .. PORT_HINT) end
    s, proto = body, pr
  end
  local ip, host, cont
  if s:sub(1, 1) == "[" then
    local rest
    ip, rest = s:match("^%[([%x:%.]+)%]:(.*)$")
    if not ip then fail(path, "bad port " .. show(v) .. PORT_HINT) end
    host, cont = rest:match("^(%d*):([^:]+)$")
    if not host then fail(path, "bad port " .. show(v) .. PORT_HINT) end
  else
    local parts = {}
    for part in (s .. ":"):gmatch("([^:]*):") do parts[#parts + 1] = part end
    if #parts == 1 then
      cont = parts[1]
    elseif #parts == 2 then
      host, cont = parts[1], parts[2]
      if host == "" then fail(path, "bad port " .. show(v) .. PORT_HINT) end
    elseif #parts == 3 then
      ip, host, cont = parts[1], parts[2], parts[3]
    else
      fail(path, "bad port " .. show(v) .. PORT_HINT)
    end
  end
  if ip and not is_ip(ip) then fail(path, "bad IP address in " .. show(v) .. PORT_HINT) end
  local p = { ip = ip or "0.0.0.0", proto = proto, container = port_number(path, cont, v) }
  if host and host ~= "" then p.host = port_number(path, host, v) end
  return p
end

function field.ports(_, path, v)
  local out = {}
  for _, e in ipairs(list(path, v, "of ports")) do out[#out + 1] = port(sub(path, e[1]), e[2]) end
  return out
end

local VOLUME_HINT = ' (use e.g. "data:/var/lib/data", "./conf:/etc/app:ro" or { tmpfs = "/tmp", size = "64m" })'
local VOLUME_NAME = "^[%w][%w_.-]*$"

local function mount_target(path, t, v)
  text(path, t)
  if t:sub(1, 1) ~= "/" then
    fail(path, "the mount target must be an absolute path in the container, got " .. show(v or t))
  end
  return normpath(t)
end

local function volume_from(ctx, path, src, target, ro, v, create)
  target = mount_target(path, target, v)
  local c = src:sub(1, 1)
  if c == "~" then
    fail(path, "bind mount source " .. show(src) .. ": ~ is not expanded; use a path relative to the stack file")
  end
  if c == "/" or c == "." then
    local abs = join(ctx.dir, src)
    local k = file_kind(abs)
    if not k then
      if create == false then
        fail(path, "bind mount source " .. show(src) .. " does not exist (relative to the stack file), " ..
          "and create_host_path = false")
      end
      -- created as an empty directory before the container (mw.containers ensure_volumes)
      return { type = "bind", source = abs, target = target, read_only = ro, create = true }
    elseif k ~= "file" and k ~= "dir" and k ~= "socket" then
      fail(path, "bind mount source " .. show(src) .. " is " .. (KINDS[k] or KINDS.other) ..
        "; mw binds a file, a directory or a socket")
    end
    return { type = "bind", source = abs, target = target, read_only = ro }
  end
  if not src:find(VOLUME_NAME) then fail(path, "bad volume name " .. show(src) .. VOLUME_HINT) end
  return { type = "volume", name = src, target = target, read_only = ro }
end

local function volume(ctx, path, v)
  if type(v) == "string" then
    text(path, v)
    local parts = {}
    for part in (v .. ":"):gmatch("([^:]*):") do parts[#parts + 1] = part end
    if #parts == 1 then
      if v:sub(1, 1) == "/" then
        fail(path, "anonymous volume " .. show(v) .. " is lost on every recreation; name it: \"name:" ..
          cut(printable(v), 40) .. "\"")
      end
      fail(path, "bad volume " .. show(v) .. VOLUME_HINT)
    end
    if #parts > 3 or parts[1] == "" or parts[2] == "" then fail(path, "bad volume " .. show(v) .. VOLUME_HINT) end
    local mode = parts[3]
    if mode ~= nil and mode ~= "ro" and mode ~= "rw" then
      fail(path, "bad mode " .. show(mode) .. " in " .. show(v) .. " (use ro or rw)")
    end
    return volume_from(ctx, path, parts[1], parts[2], mode == "ro", v)
  end
  if type(v) ~= "table" then must(path, v, "a string like \"data:/path\" or a table") end
  if rawget(v, "tmpfs") ~= nil then
    fields(path, v, { "tmpfs", "size" })
    local m = { type = "tmpfs", target = mount_target(sub(path, "tmpfs"), rawget(v, "tmpfs")) }
    local size = rawget(v, "size")
    if size ~= nil then m.size = bytes(sub(path, "size"), size) end
    return m
  end
  fields(path, v, { "source", "target", "read_only", "tmpfs", "size", "shared", "create_host_path", "external" })
  local src, target = rawget(v, "source"), rawget(v, "target")
  local shared = rawget(v, "shared")
  if shared ~= nil then boolean(sub(path, "shared"), shared) end
  if src == nil then fail(path, "needs 'source' (a volume name or a path) or 'tmpfs'") end
  if target == nil then fail(path, "needs 'target' (the path in the container)") end
  nonempty(sub(path, "source"), src)
  local ro = rawget(v, "read_only")
  if ro ~= nil then boolean(sub(path, "read_only"), ro) end
  local create = rawget(v, "create_host_path")
  if create ~= nil then boolean(sub(path, "create_host_path"), create) end
  local m = volume_from(ctx, path, src, target, ro == true, nil, create)
  if create ~= nil and m.type ~= "bind" then
    fail(sub(path, "create_host_path"), "only a bind mount (a path) has a host path to create")
  end
  if shared then
    if m.type ~= "volume" then fail(sub(path, "shared"), "only a named volume can be shared by instances") end
    m.shared = true
  end
  -- external: an existing volume used by its exact name, never created or removed (README
  -- "Networks and external volumes"); every instance mounts the same one.
  local external = rawget(v, "external")
  if external ~= nil then boolean(sub(path, "external"), external) end
  if external then
    if m.type ~= "volume" then fail(sub(path, "external"), "only a named volume can be external (a path is a bind mount)") end
    m.external, m.shared = true, true
  end
  return m
end

function field.volumes(ctx, path, v)
  local out, seen = {}, {}
  for _, e in ipairs(list(path, v, "of volumes")) do
    local p = sub(path, e[1])
    local m = volume(ctx, p, e[2])
    if seen[m.target] then
      fail(p, string.format("mount target %s is also used by item [%d]", show(m.target), seen[m.target]))
    end
    seen[m.target] = e[1]
    out[#out + 1] = m
  end
  return out
end

function field.secrets(ctx, path, v)
  local out = {}
  for _, e in ipairs(map(path, v, "a table of name = \"./file\"")) do
    local name, file = e[1], e[2]
    local p = sub(path, name)
    if not name:find(VOLUME_NAME) or #name > 64 then
      fail(path, "bad secret name '" .. keyname(name) .. "' (use letters, digits, '_', '.', '-')", name)
    end
    nonempty(p, file, "a path to a file, relative to the stack file")
    local abs = join(ctx.dir, file)
    -- The path is named, never the content: the file is not even opened here.
    local k, st = file_kind(abs)
    if not k then fail(p, "secret file " .. show(file) .. " not found (relative to the stack file)") end
    if k ~= "file" then fail(p, "secret file " .. show(file) .. " is " .. (KINDS[k] or KINDS.other) .. ", not a regular file") end
    if st.size > checks.MAX_SECRET then fail(p, "secret file " .. show(file) .. " is larger than 1 MiB") end
    out[#out + 1] = { name = name, source = abs, target = "/run/secrets/" .. name }
  end
  return out
end

-- Configs: files mounted read-only, like secrets but not secret (compose's `configs`). The
-- content is read here, bounded like a secret, and its hash kept so a changed file recreates
-- the component on reload (the path alone would not change).
function field.configs(ctx, path, v)
  local out, seen = {}, {}
  for _, e in ipairs(map(path, v, "a table of name = \"./file\" or name = { file = \"./file\", target = \"/path\" }")) do
    local name, d = e[1], e[2]
    local p = sub(path, name)
    if not name:find(VOLUME_NAME) or #name > 64 then
      fail(path, "bad config name '" .. keyname(name) .. "' (use letters, digits, '_', '.', '-')", name)
    end
    local file, target = d, "/" .. name
    if type(d) == "table" and not secret.is(d) then
      for k in pairs(d) do
        if k ~= "file" and k ~= "target" then
          fail(sub(p, k), "unknown key '" .. keyname(k) .. "' (a config has 'file' and 'target')")
        end
      end
      file = rawget(d, "file")
      if rawget(d, "target") ~= nil then target = mount_target(sub(p, "target"), rawget(d, "target")) end
      p = sub(p, "file")
    end
    nonempty(p, file, "a path to a file, relative to the stack file")
    local abs = join(ctx.dir, file)
    local k, st = file_kind(abs)
    if not k then fail(p, "config file " .. show(file) .. " not found (relative to the stack file)") end
    if k ~= "file" then fail(p, "config file " .. show(file) .. " is " .. (KINDS[k] or KINDS.other) .. ", not a regular file") end
    if st.size > checks.MAX_CONFIG then fail(p, "config file " .. show(file) .. " is larger than 1 MiB") end
    local f = io.open(abs, "rb")
    local content = f and f:read(checks.MAX_CONFIG + 1)
    if f then f:close() end
    if not content and st.size > 0 then fail(p, "config file " .. show(file) .. " cannot be read") end
    if content and #content > checks.MAX_CONFIG then fail(p, "config file " .. show(file) .. " is larger than 1 MiB") end
    if seen[target] then fail(p, "config target " .. show(target) .. " is also used by config '" .. seen[target] .. "'") end
    seen[target] = name
    out[#out + 1] = { name = name, source = abs, target = target, content = core.hash(content or "") }
  end
  table.sort(out, function(a, b) return a.name < b.name end)
  return out
end

-- An alert hook: function(event) called with each event record (mw.alerts, README "on_event").
function field.on_event(_, path, v)
  if type(v) ~= "function" then must(path, v, "a function(event) (README \"on_event\")") end
  return v
end

function field.scale(_, path, v) return integer(path, v, 0, 1000) end

-- Owned by mw.autoscale; here it only has to be a table (or false to turn it off).
-- autoscale = { min =, max =, every =, decide = function(s) return desired end }
function field.autoscale(_, path, v)
  if v == false then return nil end
  if type(v) ~= "table" then must(path, v, "a table { min =, max =, every =, decide = function(s) ... end }") end
  fields(path, v, { "min", "max", "every", "decide" })
  local a = { min = 1, max = 8, every = 5 }
  if rawget(v, "min") ~= nil then a.min = integer(sub(path, "min"), rawget(v, "min"), 0, 1000) end
  if rawget(v, "max") ~= nil then a.max = integer(sub(path, "max"), rawget(v, "max"), 1, 1000) end
  if a.min > a.max then fail(path, string.format("min (%d) is above max (%d)", a.min, a.max), "min") end
  if rawget(v, "every") ~= nil then a.every = dur(sub(path, "every"), rawget(v, "every"), true) end
  local decide = rawget(v, "decide")
  if type(decide) ~= "function" and not (type(decide) == "table" and getmetatable(decide) and not secret.is(decide)) then
    must(sub(path, "decide"), decide, "a function(s) returning the desired number of instances")
  end
  a.decide = decide
  return a
end

-- rollout = { parallel = 1, timeout = "60s" }: how a changed component with several
-- instances is replaced: how many at once, and how long each new one may take to be healthy.
function field.rollout(_, path, v)
  if type(v) ~= "table" then must(path, v, "a table { parallel =, timeout = }") end
  fields(path, v, { "parallel", "timeout" })
  local r = { parallel = 1 }
  if rawget(v, "parallel") ~= nil then r.parallel = integer(sub(path, "parallel"), rawget(v, "parallel"), 1, 100) end
  if rawget(v, "timeout") ~= nil then r.timeout = dur(sub(path, "timeout"), rawget(v, "timeout"), true) end
  return r
end

-- A warm standby (mw.standby): true, or a table of its options.
function field.standby(_, path, v)
  if v == false then return false end
  local sb = { keep_failed = false }
  if v == true then return sb end
  if type(v) ~= "table" then must(path, v, "true, false or a table { keep_failed = true }") end
  fields(path, v, { "keep_failed" })
  local keep = rawget(v, "keep_failed")
  if keep ~= nil then sb.keep_failed = boolean(sub(path, "keep_failed"), keep) end
  return sb
end

-- What a standby cannot be correct with: a fixed host port (the active container holds it, so
-- the standby could not be created, or would take over the port while frozen), and a named
-- volume two containers would write at once unless the stack says it may be shared.
local function standby_conflicts(path, c)
  if not c.standby then return end
  local at = sub(path, "standby")
  for i, p in ipairs(c.ports) do
    if p.host then
      fail(at, string.format("a standby cannot have a fixed host port: ports[%d] publishes host port %d, "
        .. "which the active container holds (leave the host port out, or drop standby)", i, p.host))
    end
  end
  for i, v in ipairs(c.volumes) do
    if v.type == "volume" and not v.shared then
      fail(at, string.format("a standby would share the named volume '%s' (volumes[%d]) with the active "
        .. "container; mark it shared = true if two containers may use it at once, or drop standby", v.name, i))
    end
  end
end

function field.working_dir(_, path, v)
  nonempty(path, v)
  if v:sub(1, 1) ~= "/" then fail(path, "must be an absolute path in the container, got " .. show(v)) end
  return v
end

function field.user(_, path, v)
  if type(v) == "number" then return tostring(integer(path, v, 0, 4294967294)) end
  nonempty(path, v, "a string like \"1000:1000\" or \"nobody\"")
  if not v:find("^[%w_][%w_.-]*$") and not v:find("^[%w_][%w_.-]*:[%w_][%w_.-]*$") then
    fail(path, "bad user " .. show(v) .. " (use e.g. \"1000\", \"1000:1000\", \"nobody\")")
  end
  return v
end

function field.labels(_, path, v)
  local out = {}
  for _, e in ipairs(map(path, v)) do
    local k = e[1]
    if not k:find("^[%w][%w_./-]*$") then fail(path, "bad label name '" .. keyname(k) .. "'", k) end
    if k == owner.KEY or k:sub(1, 3) == "mw." then
      fail(path, "label '" .. keyname(k) .. "' is reserved for mw", k)
    end
    out[k] = scalar(sub(path, k), e[2])
  end
  return out
end

function field.hostname(_, path, v)
  nonempty(path, v)
  if not hostname_ok(v) then fail(path, "bad hostname " .. show(v)) end
  return v
end

function field.extra_hosts(_, path, v)
  local out = {}
  local named = keyed_entries(path, v, "a table of host = \"ip\"", "host:ip", "", "^([^:]+):(.+)$")
  for _, e in ipairs(named) do
    local p = e[3] or sub(path, e[1])
    if not hostname_ok(e[1]) then fail(p, "bad host name '" .. keyname(e[1]) .. "'") end
    local ip = text(p, e[2], "a string (an IP address or \"host-gateway\")")
    if ip ~= "host-gateway" and not is_ip(ip) then fail(p, "bad IP address " .. show(ip)) end
    out[#out + 1] = e[1] .. ":" .. ip
  end
  return out
end

function field.stop_signal(_, path, v)
  if type(v) == "number" then return tostring(integer(path, v, 1, 64)) end
  nonempty(path, v, "a signal name like \"SIGTERM\"")
  local s = v:upper():gsub("^SIG", "")
  if SIGNALS[s] or s:find("^RTMIN%+%d+$") or s:find("^RTMAX%-%d+$") then return "SIG" .. s end
  fail(path, "unknown signal " .. show(v) .. " (use e.g. \"SIGTERM\", \"SIGINT\", \"SIGQUIT\")")
end

function field.stop_grace(_, path, v) return dur(path, v) end
function field.init(_, path, v) return boolean(path, v) end
function field.hold_network(_, path, v) return boolean(path, v) end
function field.read_only(_, path, v) return boolean(path, v) end

local function caps(_, path, v)
  local out, seen = {}, {}
  for _, e in ipairs(list(path, v, "of capability names")) do
    local p = sub(path, e[1])
    local c = nonempty(p, e[2], "a capability name like \"NET_ADMIN\""):upper():gsub("^CAP_", "")
    if not CAPABILITIES[c] then
      local names = {}
      for k in pairs(CAPABILITIES) do names[#names + 1] = k end
      local hint = sandbox.suggest(c, names)
      fail(p, "unknown capability " .. show(e[2]) .. (hint and " (did you mean '" .. hint .. "'?)" or ""))
    end
    if not seen[c] then out[#out + 1] = c; seen[c] = true end
  end
  return out
end
field.cap_add, field.cap_drop = caps, caps

function field.memory(_, path, v)
  local b = bytes(path, v)
  -- The engine refuses limits below 6 MiB; saying so here beats a failed create later.
  if b < 6 * 1024 * 1024 then fail(path, "must be at least 6m (the engine's minimum), got " .. show(v)) end
  return b
end

function field.shm_size(_, path, v)
  local b = bytes(path, v)
  if b <= 0 then fail(path, "must be > 0") end
  return b
end

function field.cpus(_, path, v)
  local n = v
  if type(v) == "string" then n = v:find("^%d*%.?%d+$") and tonumber(v) or nil end
  if type(n) ~= "number" then must(path, v, "a number of CPUs like 0.5 or 2") end
  if n ~= n or n <= 0 or n > 1024 then fail(path, "must be a number of CPUs > 0, got " .. show(v)) end
  return n
end

function field.ulimits(_, path, v)
  local out = {}
  for _, e in ipairs(map(path, v)) do
    local name, val = e[1], e[2]
    local p = sub(path, name)
    if not ULIMITS[name] then
      local names = {}
      for k in pairs(ULIMITS) do names[#names + 1] = k end
      local hint = sandbox.suggest(name, names)
      fail(path, "unknown ulimit '" .. keyname(name) .. "'" ..
        (hint and " (did you mean '" .. hint .. "'?)" or ""), name)
    end
    local soft, hard
    if type(val) == "table" then
      fields(p, val, { "soft", "hard" })
      soft = integer(sub(p, "soft"), rawget(val, "soft"), -1, math.maxinteger)
      hard = integer(sub(p, "hard"), rawget(val, "hard"), -1, math.maxinteger)
      if hard ~= -1 and (soft == -1 or soft > hard) then fail(p, "soft limit must not exceed the hard limit") end
    else
      if type(val) ~= "number" then must(p, val, "a number or a table { soft =, hard = }") end
      soft = integer(p, val, -1, math.maxinteger)
      hard = soft
    end
    out[name] = { soft = soft, hard = hard }
  end
  return out
end

-- Host and kernel settings (issue 19) ---------------------------------------------------------

function field.privileged(_, path, v) return boolean(path, v) end

-- devices = { "/dev/fuse", "/dev/sda:/dev/xvda:rwm" } or tables { host =, container =, permissions = }:
-- the host path must be a device here (the engine says so only at start).
function field.devices(_, path, v)
  local out = {}
  for _, e in ipairs(list(path, v, "of device paths like \"/dev/fuse\" or \"/dev/a:/dev/b:rw\"")) do
    local p = sub(path, e[1])
    local host, cont, perms
    if type(e[2]) == "table" then
      fields(p, e[2], { "host", "container", "permissions" })
      host = nonempty(sub(p, "host"), rawget(e[2], "host"), "a device path on the host")
      cont = rawget(e[2], "container") and nonempty(sub(p, "container"), rawget(e[2], "container"))
      perms = rawget(e[2], "permissions") and nonempty(sub(p, "permissions"), rawget(e[2], "permissions"))
    else
      local s = nonempty(p, e[2], "a device path like \"/dev/fuse\"")
      host, cont, perms = s:match("^([^:]+):?([^:]*):?([^:]*)$")
      if not host then fail(p, "must look like \"/dev/host[:/dev/container[:rwm]]\", got " .. show(s)) end
      if cont == "" then cont = nil end
      if perms == "" then perms = nil end
      -- "/dev/a:rw": the second part is permissions when it is not a path (docker's own reading)
      if cont and not perms and cont:find("^[rwm]+$") then cont, perms = nil, cont end
    end
    if host:sub(1, 1) ~= "/" then fail(p, "device " .. show(host) .. " must be an absolute path") end
    if cont and cont:sub(1, 1) ~= "/" then fail(p, "container path " .. show(cont) .. " must be absolute") end
    if perms and not perms:find("^[rwm]+$") then fail(p, "permissions " .. show(perms) .. " must be made of r, w, m") end
    local kind = file_kind(host)
    if kind ~= "char" and kind ~= "block" then
      fail(p, "device " .. show(host) .. (kind and (" is " .. KINDS[kind] .. ", not a device") or " does not exist on this host"))
    end
    out[#out + 1] = { host = host, container = cont or host, permissions = perms or "rwm" }
  end
  return out
end

-- gpus = "all" | a count | { count =, ids =, capabilities =, driver = }: a device request as
-- `docker run --gpus` makes it (HostConfig.DeviceRequests, API 1.40+).
function field.gpus(_, path, v)
  if v == "all" then return { count = -1, capabilities = { "gpu" } } end
  if type(v) == "number" then return { count = integer(path, v, 1, 1024), capabilities = { "gpu" } } end
  if type(v) ~= "table" then must(path, v, "\"all\", a count, or { count =, ids =, capabilities =, driver = }") end
  fields(path, v, { "count", "ids", "capabilities", "driver", "options" })
  local out = { capabilities = { "gpu" } }
  local count = rawget(v, "count")
  if count == "all" then out.count = -1
  elseif count ~= nil then out.count = integer(sub(path, "count"), count, 1, 1024) end
  if rawget(v, "ids") ~= nil then
    out.ids = {}
    for _, e in ipairs(list(sub(path, "ids"), rawget(v, "ids"), "of device ids")) do
      out.ids[#out.ids + 1] = nonempty(sub(sub(path, "ids"), e[1]), e[2] ~= nil and tostring(e[2]) or e[2])
    end
    if out.count then fail(path, "give 'count' or 'ids', not both") end
  end
  if not out.count and not out.ids then out.count = -1 end
  if rawget(v, "capabilities") ~= nil then
    out.capabilities = {}
    for _, e in ipairs(list(sub(path, "capabilities"), rawget(v, "capabilities"), "of capability names")) do
      out.capabilities[#out.capabilities + 1] = nonempty(sub(sub(path, "capabilities"), e[1]), e[2])
    end
  end
  if rawget(v, "driver") ~= nil then out.driver = nonempty(sub(path, "driver"), rawget(v, "driver")) end
  if rawget(v, "options") ~= nil then
    out.options = {}
    for _, e in ipairs(map(sub(path, "options"), rawget(v, "options"))) do
      out.options[e[1]] = text(sub(sub(path, "options"), e[1]), e[2], "a string")
    end
  end
  return out
end

-- sysctls = { ["net.core.somaxconn"] = 1024 }: namespaced kernel settings (the engine refuses
-- others at start, with its message).
function field.sysctls(_, path, v)
  local out = {}
  for _, e in ipairs(map(path, v)) do
    local p = sub(path, e[1])
    if not tostring(e[1]):find("^[%w_]+[%w_%.%-/]*$") then fail(path, "bad sysctl name '" .. keyname(e[1]) .. "'", e[1]) end
    local val = e[2]
    if type(val) == "number" or type(val) == "boolean" then val = tostring(val) end
    out[e[1]] = text(p, val, "a string or a number")
  end
  return out
end

local function strings(path, v, what, check_one)
  if type(v) == "string" then v = { v } end
  local out = {}
  for _, e in ipairs(list(path, v, what)) do
    local s = nonempty(sub(path, e[1]), e[2])
    if check_one then check_one(sub(path, e[1]), s) end
    out[#out + 1] = s
  end
  return out
end

function field.dns(_, path, v)
  return strings(path, v, "of IP addresses", function(p, s)
    if not is_ip(s) then fail(p, "bad IP address " .. show(s)) end
  end)
end
function field.dns_search(_, path, v)
  return strings(path, v, "of domain names", function(p, s)
    if s ~= "." and not hostname_ok(s) then fail(p, "bad domain name " .. show(s)) end
  end)
end
function field.dns_opt(_, path, v) return strings(path, v, "of resolver options like \"ndots:2\"") end
function field.security_opt(_, path, v)
  return strings(path, v, "of options like \"no-new-privileges:true\"", function(p, s)
    local k = s:match("^([%w%-]+)[:=]") or s
    if not ({ ["no-new-privileges"] = true, seccomp = true, apparmor = true, label = true,
              ["systempaths"] = true })[k] then
      fail(p, "unknown security option " .. show(s) .. " (the engine knows no-new-privileges, seccomp, apparmor, label)")
    end
  end)
end
function field.group_add(_, path, v)
  return strings(path, type(v) == "number" and tostring(v) or v, "of group names or ids")
end
function field.oom_score_adj(_, path, v) return integer(path, v, -1000, 1000) end
function field.memory_reservation(_, path, v)
  local b = bytes(path, v)
  if b <= 0 then fail(path, "must be > 0") end
  return b
end

-- ipc = "private" | "shareable" | "host" | "none"; pid = "host". Sharing another component's
-- namespace ("container:x") is not offered: the engine wants a container, not a component.
function field.ipc(_, path, v)
  local s = nonempty(path, v, "\"private\", \"shareable\", \"host\" or \"none\"")
  if not ({ private = true, shareable = true, host = true, none = true })[s] then
    fail(path, "must be \"private\", \"shareable\", \"host\" or \"none\", got " .. show(s))
  end
  return s
end
function field.pid(_, path, v)
  local s = nonempty(path, v, "\"host\"")
  if s ~= "host" then fail(path, "must be \"host\" (or left out for a namespace of its own), got " .. show(s)) end
  return s
end

-- logging = { driver = "json-file", options = { ["max-size"] = "10m", ["max-file"] = "3" } }, or
-- "engine": the engine's own default, with no rotation. Absent: logging.DEFAULT (README "Logs").
local LOG_DRIVERS = { ["json-file"] = true, ["local"] = true, journald = true, syslog = true, none = true,
                      gelf = true, fluentd = true, awslogs = true, splunk = true, etwlogs = true,
                      gcplogs = true, logentries = true }
function field.logging(_, path, v)
  if v == "engine" then return "engine" end
  if type(v) ~= "table" then must(path, v, "{ driver =, options = } or \"engine\"") end
  fields(path, v, { "driver", "options" })
  local driver = rawget(v, "driver") == nil and "json-file" or nonempty(sub(path, "driver"), rawget(v, "driver"))
  if not LOG_DRIVERS[driver] and not driver:find("^[%w%.%-_/:]+$") then
    fail(sub(path, "driver"), "bad log driver name " .. show(driver))
  end
  local options = {}
  if rawget(v, "options") ~= nil then
    for _, e in ipairs(map(sub(path, "options"), rawget(v, "options"))) do
      local val = e[2]
      if type(val) == "number" then val = tostring(math.tointeger(val) or val) end
      options[e[1]] = text(sub(sub(path, "options"), e[1]), val, "a string")
    end
  end
  return { driver = driver, options = options }
end

-- network_mode = "host" | "none" | "service:<component>" (compose's "container:<name>" is
-- read as a component's name too). Nothing is published; see README "network_mode".
function field.network_mode(_, path, v)
  local s = nonempty(path, v, "\"host\", \"none\" or \"service:<component>\"")
  if s == "host" or s == "none" then return s end
  local of = s:match("^service:(.+)$") or s:match("^container:(.+)$")
  if of then return "service:" .. of end
  fail(path, "must be \"host\", \"none\" or \"service:<component>\", got " .. show(s) ..
    (s == "bridge" and " (components join the stack's network when network_mode is left out)" or ""))
end

-- networks = { "front", back = { ipv4_address = "172.28.0.10", aliases = { "api" } } }: names,
-- and per network a static address and extra DNS names. An entry without options stays a plain
-- name (so a list-form component hashes as before); one with options is { name =, ipv4_address =,
-- aliases = }. mw.stack checks the address against the stack's `networks` (README "Networks").
function field.networks(_, path, v)
  if type(v) ~= "table" then must(path, v, "a list of network names or a table of name = { ... }") end
  local items, named = entries(path, v)
  local out, seen = {}, {}
  local function add(p, n, opts)
    n = nonempty(p, n, "a network name")
    if not n:find(VOLUME_NAME) or #n > 64 then fail(p, "bad network name " .. show(n)) end
    if seen[n] then fail(p, "network " .. show(n) .. " is listed twice") end
    seen[n] = true
    if opts then opts.name = n; out[#out + 1] = opts else out[#out + 1] = n end
  end
  for _, e in ipairs(items) do add(sub(path, e[1]), e[2]) end
  table.sort(named, function(a, b) return tostring(a[1]) < tostring(b[1]) end)
  for _, e in ipairs(named) do
    local p = sub(path, e[1])
    if type(e[1]) ~= "string" then fail(path, "has a key of type " .. type(e[1])) end
    local o = e[2]
    if type(o) ~= "table" then must(p, o, "a table { ipv4_address = ..., aliases = { ... } }") end
    fields(p, o, { "ipv4_address", "aliases" })
    local opts = {}
    local addr = rawget(o, "ipv4_address")
    if addr ~= nil then
      addr = nonempty(sub(p, "ipv4_address"), addr, "an IPv4 address")
      if not addr:match("^%d+%.%d+%.%d+%.%d+$") or not is_ip(addr) then
        fail(sub(p, "ipv4_address"), "bad IPv4 address " .. show(addr))
      end
      opts.ipv4_address = addr
    end
    local aliases = rawget(o, "aliases")
    if aliases ~= nil then
      local al = {}
      for _, a in ipairs(list(sub(p, "aliases"), aliases, "of DNS names")) do
        local name = nonempty(sub(sub(p, "aliases"), a[1]), a[2], "a DNS name")
        if not hostname_ok(name) then fail(sub(sub(p, "aliases"), a[1]), "bad DNS name " .. show(name)) end
        al[#al + 1] = name
      end
      if #al > 0 then opts.aliases = al end
    end
    add(p, e[1], next(opts) and opts or nil)
  end
  return out
end

-- A whole component: the fields mw.fields lists, each checked by its validator, over the defaults.
local function component(ctx, name, raw)
  local path = { "components", name }
  if type(raw) ~= "table" then
    must(path, raw, "a table of fields (e.g. { image = \"nginx\" })")
  end
  fields(path, raw, fields_table.names)
  -- Before the fields themselves: with both given, a missing Dockerfile is beside the point.
  local has_image, has_build = rawget(raw, "image") ~= nil, rawget(raw, "build") ~= nil
  if has_image and has_build then fail(path, "has both 'image' and 'build'; give one", "build") end
  if not has_image and not has_build then fail(path, "needs 'image' or 'build'") end
  local c = fields_table.defaults(name)
  for _, f in ipairs(fields_table.names) do
    local v = rawget(raw, f)
    if v ~= nil then c[f] = field[f](ctx, sub(path, f), v) end
  end
  -- Fields that contradict each other, each in one line.
  if c.privileged then
    for _, cap in ipairs(c.cap_drop) do
      if cap == "ALL" then
        fail(path, "has 'privileged = true' with cap_drop \"ALL\": a privileged container keeps every capability; give one", "privileged")
      end
    end
  end
  if c.network_mode then
    local mode = c.network_mode
    if #c.ports > 0 then
      fail(path, "has network_mode " .. show(mode) .. " and 'ports': " .. (mode == "host" and
        "a host-networked container listens on the host's ports itself; drop 'ports'" or
        "it has no network of its own to publish from; publish the ports on the component it shares"), "ports")
    end
    if #c.networks > 0 then
      fail(path, "has network_mode " .. show(mode) .. " and 'networks': it joins no network of its own", "networks")
    end
    local hb = c.heartbeat
    if hb and (hb.kind == "http" or hb.kind == "tcp") and mode ~= "host" then
      fail(path, "has network_mode " .. show(mode) .. " and an " .. hb.kind .. " heartbeat mw cannot reach " ..
        "through a published port; use an exec heartbeat", "heartbeat")
    end
    if mode ~= "host" then
      for _, f in ipairs { "hostname", "dns", "dns_search", "dns_opt", "extra_hosts" } do
        local val = c[f]
        if val ~= nil and not (type(val) == "table" and next(val) == nil) then
          fail(path, "has network_mode " .. show(mode) .. " and '" .. f .. "': the engine refuses both " ..
            "(the namespace it joins has its own)", f)
        end
      end
    end
  end
  standby_conflicts(path, c)
  if c.standby and c.network_mode then
    fail(path, "has a standby and network_mode " .. show(c.network_mode) .. ": a standby lives on a network of its own",
      "standby")
  end
  if c.standby and c.job then fail(path, "is a job and has a standby: a job runs once to completion", "standby") end
  -- The seed's components find their introspection port here.
  if c.heartbeat and c.heartbeat.kind == "http" and c.env.INTROSPECTION_PORT == nil then
    c.env.INTROSPECTION_PORT = tostring(c.heartbeat.port)
  end
  return c
end


validate.field = field
validate.component = component

return validate
