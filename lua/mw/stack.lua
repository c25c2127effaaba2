-- Loads a stack file in its sandbox and turns it into a validated, normalized stack: the
-- stack's own checks (names, dependencies, ports), the loading and the plan `mw check` prints.
-- The fields of a component are checked in mw.validate, the line of a failure found in mw.srcline.
local sandbox  = require "mw.sandbox"
local duration = require "mw.duration"
local policy   = require "mw.policy"
local paths    = require "mw.path"
local fs       = require "mw.fs"
local mwtext   = require "mw.text"
local check    = require "mw.check"
local srcline  = require "mw.srcline"
local validator = require "mw.validate"

local stack = {}

local BUDGET = { instructions = 1e8, seconds = 2 }
local MAX_MESSAGE = 400
local MAX_COMPONENTS = 1000

stack.HEARTBEAT_DEFAULTS = validator.HEARTBEAT_DEFAULTS
-- Caps on the files a stack names that mw reads or hands on whole (README "Limits").
stack.MAX_SECRET, stack.MAX_DOCKERFILE, stack.MAX_IGNORE = check.MAX_SECRET, check.MAX_DOCKERFILE, check.MAX_IGNORE
stack.MAX_CONFIG = check.MAX_CONFIG

local TOP_FIELDS = { "name", "components", "on_event", "networks" }

local normpath, join, dirname, relative = paths.normalize, paths.join, paths.dirname, paths.relative
local printable, cut = mwtext.printable, mwtext.cut
local Failure, fail, where, keyname, show, typeof = check.Failure, check.fail, check.where, check.keyname,
  check.show, check.typeof
local fields, must, nonempty, file_kind, KINDS = check.fields, check.must, check.nonempty, check.file_kind, check.KINDS
local blank_comments, line_at, repeated_key, locate = srcline.blank_comments, srcline.line_at,
  srcline.repeated_key, srcline.locate
local component = validator.component

-- Components and the stack ----------------------------------------------------------------

local COMPONENT_NAME = "^[a-z0-9][a-z0-9_-]*$"
local STACK_NAME = "^[a-z0-9][a-z0-9_.-]*$"

-- The first cycle met walking the components by name, printed from where it closes.
local function find_cycle(comps, names)
  local state, trail = {}, {}
  local function visit(n)
    state[n] = "active"
    trail[#trail + 1] = n
    local deps = {}
    for d in pairs(comps[n].depends_on) do deps[#deps + 1] = d end
    table.sort(deps)
    for _, d in ipairs(deps) do
      if state[d] == "active" then
        local cycle = {}
        for i = #trail, 1, -1 do
          table.insert(cycle, 1, trail[i])
          if trail[i] == d then break end
        end
        cycle[#cycle + 1] = d
        return cycle
      elseif state[d] == nil then
        local c = visit(d)
        if c then return c end
      end
    end
    trail[#trail] = nil
    state[n] = "done"
  end
  for _, n in ipairs(names) do
    if state[n] == nil then
      local c = visit(n)
      if c then return c end
    end
  end
end

-- Kahn's algorithm with the ready set in a binary heap, so ties go by name and a thousand
-- components stay cheap.
local function start_order(comps, names)
  local indeg, users = {}, {}
  for _, n in ipairs(names) do indeg[n] = 0; users[n] = {} end
  for _, n in ipairs(names) do
    for d in pairs(comps[n].depends_on) do
      indeg[n] = indeg[n] + 1
      users[d][#users[d] + 1] = n
    end
  end
  local heap = {}
  local function push(x)
    heap[#heap + 1] = x
    local i = #heap
    while i > 1 and heap[i // 2] > heap[i] do
      heap[i], heap[i // 2] = heap[i // 2], heap[i]
      i = i // 2
    end
  end
  local function pop()
    local top = heap[1]
    heap[1] = heap[#heap]
    heap[#heap] = nil
    local i = 1
    while true do
      local l, r, m = 2 * i, 2 * i + 1, i
      if heap[l] and heap[l] < heap[m] then m = l end
      if heap[r] and heap[r] < heap[m] then m = r end
      if m == i then break end
      heap[i], heap[m] = heap[m], heap[i]
      i = m
    end
    return top
  end
  for _, n in ipairs(names) do if indeg[n] == 0 then push(n) end end
  local order = {}
  while #heap > 0 do
    local n = pop()
    order[#order + 1] = n
    for _, u in ipairs(users[n]) do
      indeg[u] = indeg[u] - 1
      if indeg[u] == 0 then push(u) end
    end
  end
  return order
end

local function check_links(comps, names)
  -- network_mode = "service:x": x must be a component, and starts first
  for _, n in ipairs(names) do
    local c = comps[n]
    local of = c.network_mode and c.network_mode:match("^service:(.+)$")
    if of then
      local p = { "components", n, "network_mode" }
      if of == n then fail(p, "a component cannot share its own network namespace") end
      if not comps[of] then
        local hint = sandbox.suggest(of, names)
        fail(p, string.format("unknown component '%s'%s", keyname(of),
          hint and string.format(" (did you mean '%s'?)", hint) or ""))
      end
      if comps[of].network_mode and comps[of].network_mode ~= "host" then
        fail(p, string.format("'%s' itself has network_mode %s; share the namespace of a component with one of its own",
          of, show(comps[of].network_mode)))
      end
      c.depends_on[of] = c.depends_on[of] or "started"
    end
  end
  for _, n in ipairs(names) do
    local c = comps[n]
    local deps = {}
    for d in pairs(c.depends_on) do deps[#deps + 1] = d end
    table.sort(deps)
    for _, d in ipairs(deps) do
      local p = { "components", n, "depends_on" }
      if not comps[d] then
        local hint = sandbox.suggest(d, names)
        fail(p, string.format("unknown component '%s'%s", keyname(d),
          hint and string.format(" (did you mean '%s'?)", hint) or ""))
      end
      if c.depends_on[d] == "healthy" and comps[d].job then
        fail(p, string.format("'%s' is a job: it runs to completion and is never healthy " ..
          "(depend on it being \"completed\")", d))
      end
      if c.depends_on[d] == "completed" and not comps[d].job then
        fail(p, string.format("'%s' is not a job, so it never completes (give it job = true, " ..
          "or depend on it being \"started\" or \"healthy\")", d))
      end
      if c.depends_on[d] == "healthy" and not comps[d].heartbeat then
        fail(p, string.format("'%s' has no heartbeat, so it can never be healthy " ..
          "(give it a heartbeat or depend on it being \"started\")", d))
      end
    end
  end
  local cycle = find_cycle(comps, names)
  if cycle then
    fail({ "components", cycle[1], "depends_on" }, "dependency cycle: " .. table.concat(cycle, " -> "))
  end

  -- Two containers cannot hold one host port; neither can two instances of one component.
  local taken = {}
  for _, n in ipairs(names) do
    local c = comps[n]
    for i, p in ipairs(c.ports) do
      if p.host then
        local path = { "components", n, "ports", i }
        if c.scale > 1 then
          fail(path, string.format("host port %d is fixed, so %d instances (scale) cannot all publish it",
            p.host, c.scale))
        end
        local key = p.proto .. "/" .. p.host
        for _, other in ipairs(taken[key] or {}) do
          local wild = other.ip == "0.0.0.0" or other.ip == "::" or p.ip == "0.0.0.0" or p.ip == "::"
          if wild or other.ip == p.ip then
            fail(path, string.format("host port %d/%s is already published by %s", p.host, p.proto,
              other.name == n and "this component" or ("component '" .. other.name .. "'")))
          end
        end
        taken[key] = taken[key] or {}
        table.insert(taken[key], { ip = p.ip, name = n })
      end
    end
  end
end

-- Profiles: a component that lists some runs only when one of them is active (mw run
-- --profile); one that lists none always runs. -> the names that run; the ones left out go in
-- `out` as name -> its profiles.
local function apply_profiles(ctx, comps, names, out)
  local declared, list = {}, {}
  for _, n in ipairs(names) do
    for _, p in ipairs(comps[n].profiles) do
      if not declared[p] then declared[p] = true list[#list + 1] = p end
    end
  end
  table.sort(list)
  local active = {}
  for _, p in ipairs(ctx.profiles or {}) do
    if not declared[p] then
      fail({}, string.format("profile '%s' is declared by no component (%s)", keyname(p),
        #list > 0 and ("its profiles: " .. table.concat(list, ", ")) or "it declares no profiles"))
    end
    active[p] = true
  end
  local kept = {}
  for _, n in ipairs(names) do
    local c, on = comps[n], #comps[n].profiles == 0
    for _, p in ipairs(c.profiles) do on = on or active[p] end
    if on then kept[#kept + 1] = n else out[n] = c.profiles end
  end
  for _, n in ipairs(kept) do
    local deps = {}
    for d in pairs(comps[n].depends_on) do deps[#deps + 1] = d end
    table.sort(deps)
    for _, d in ipairs(deps) do
      if out[d] then
        fail({ "components", n, "depends_on" }, string.format("'%s' runs only with profile %s, which is not active " ..
          "(mw run --profile %s)", d, table.concat(out[d], " or "), out[d][1]))
      end
    end
  end
  for n in pairs(out) do comps[n] = nil end
  return kept
end

-- Networks ------------------------------------------------------------------------------------

-- "a.b.c.d" -> a 32-bit number (validated addresses only).
local function ipv4_number(s)
  local a, b, c, d = s:match("^(%d+)%.(%d+)%.(%d+)%.(%d+)$")
  if not a then return nil end
  a, b, c, d = tonumber(a), tonumber(b), tonumber(c), tonumber(d)
  if a > 255 or b > 255 or c > 255 or d > 255 then return nil end
  return ((a * 256 + b) * 256 + c) * 256 + d
end

-- "a.b.c.d/n" -> { base =, bits =, first =, last = } or nil.
local function parse_subnet(s)
  local ip, bits = s:match("^([%d.]+)/(%d+)$")
  local n = ip and ipv4_number(ip)
  bits = tonumber(bits)
  if not n or not bits or bits > 30 or bits < 8 then return nil end
  local size = 1 << (32 - bits)
  if n % size ~= 0 then
    local net = n - n % size
    return nil, "has host bits set (the network address is " ..
      string.format("%d.%d.%d.%d/%d", net >> 24, (net >> 16) & 255, (net >> 8) & 255, net & 255, bits) .. ")"
  end
  return { base = n, bits = bits, first = n + 1, last = n + size - 2 }
end

-- The stack's `networks = { back = { subnet =, gateway =, internal = }, corp = { external = true,
-- name = } }` (README "Networks").
local function stack_networks(v)
  if v == nil then return {} end
  local out = {}
  for _, e in ipairs(check.map({ "networks" }, v, "a table of name = { subnet = ..., external = ... }")) do
    local n, d = e[1], e[2]
    local p = { "networks", n }
    if type(n) ~= "string" or not n:find("^[%w][%w_.-]*$") or #n > 64 then fail(p, "bad network name " .. show(n)) end
    if type(d) ~= "table" then must(p, d, "a table { subnet = ..., gateway = ..., internal = ... } or { external = true }") end
    fields(p, d, { "subnet", "gateway", "internal", "external", "name" })
    local def = {}
    local ext = rawget(d, "external")
    if ext ~= nil then def.external = check.boolean({ "networks", n, "external" }, ext) or nil end
    local name = rawget(d, "name")
    if name ~= nil then
      name = nonempty({ "networks", n, "name" }, name, "the network's name on the engine")
      if not def.external then fail({ "networks", n, "name" }, "only an external network has a name of its own " ..
        "(mw names its networks mw-<stack>-" .. n .. ")") end
      if not name:find("^[%w][%w_.-]*$") or #name > 128 then fail({ "networks", n, "name" }, "bad network name " .. show(name)) end
      def.name = name
    end
    if def.external then
      for _, f in ipairs { "subnet", "gateway", "internal" } do
        if rawget(d, f) ~= nil then
          fail({ "networks", n, f }, "an external network is made by someone else; mw sets nothing on it")
        end
      end
    end
    local subnet = rawget(d, "subnet")
    if subnet ~= nil then
      subnet = nonempty({ "networks", n, "subnet" }, subnet, "an IPv4 subnet like \"172.28.0.0/16\"")
      local sn, why = parse_subnet(subnet)
      if not sn then fail({ "networks", n, "subnet" }, "bad subnet " .. show(subnet) .. " " ..
        (why or "(an IPv4 subnet like \"172.28.0.0/16\", prefix /8 to /30)")) end
      def.subnet, def.range = subnet, sn
    end
    local gw = rawget(d, "gateway")
    if gw ~= nil then
      gw = nonempty({ "networks", n, "gateway" }, gw, "an IPv4 address")
      local g = ipv4_number(gw)
      if not g then fail({ "networks", n, "gateway" }, "bad IPv4 address " .. show(gw)) end
      if not def.range then fail({ "networks", n, "gateway" }, "a gateway needs the network's 'subnet'") end
      if g < def.range.first or g > def.range.last then
        fail({ "networks", n, "gateway" }, "gateway " .. gw .. " is not in subnet " .. def.subnet)
      end
      def.gateway, def.gateway_n = gw, g
    end
    local internal = rawget(d, "internal")
    if internal ~= nil then def.internal = check.boolean({ "networks", n, "internal" }, internal) or nil end
    out[n] = def
  end
  return out
end

-- Each component's static addresses against the declared subnets: inside, not the gateway's,
-- used once, on one container (scale 1). The engine refuses a static address on a network
-- without a user-configured subnet ("user specified IP address is supported only when
-- connecting to networks with user configured subnets"), so mw says so first.
local function check_addresses(nets, comps, names)
  local taken = {}
  for _, cn in ipairs(names) do
    local c = comps[cn]
    for i, e in ipairs(c.networks or {}) do
      if type(e) == "table" then
        local n, def = e.name, nets[e.name]
        local p = { "components", cn, "networks", n }
        if def and def.external then
          -- the engine's name is part of what the container joins: hashed with the entry
          e.external = def.name or n
        end
        if e.ipv4_address then
          local addr = e.ipv4_address
          if not def then
            fail(p, "a static ipv4_address needs the network declared with a subnet: networks = { " .. n ..
              " = { subnet = \"...\" } } (the engine gives static addresses only on a user-configured subnet)")
          end
          if not def.external then
            if not def.range then
              fail(p, "network " .. show(n) .. " has no 'subnet'; the engine gives static addresses only on a " ..
                "user-configured subnet")
            end
            local a = ipv4_number(addr)
            if a < def.range.first or a > def.range.last then
              fail(p, "ipv4_address " .. addr .. " is not in network " .. n .. "'s subnet " .. def.subnet)
            end
            if a == (def.gateway_n or def.range.first) then
              fail(p, "ipv4_address " .. addr .. " is the gateway's address on network " .. n ..
                (def.gateway and "" or " (the engine takes the subnet's first address)"))
            end
          end
          if c.scale > 1 then
            fail(p, "has a static ipv4_address and scale " .. tostring(c.scale) .. ": instances cannot share one address")
          end
          local auto = c.autoscale
          if type(auto) == "table" and type(auto.max) == "number" and auto.max > 1 then
            fail(p, "has a static ipv4_address and autoscale up to " .. tostring(auto.max) ..
              ": instances cannot share one address")
          end
          local k = n .. " " .. addr
          if taken[k] then
            fail(p, "ipv4_address " .. addr .. " on network " .. n .. " is also component " .. taken[k] .. "'s")
          end
          taken[k] = cn
        end
      elseif nets[e] and nets[e].external then
        c.networks[i] = { name = e, external = nets[e].name or e }
      end
    end
  end
end

local function validate(ctx, top)
  check.reset()
  if type(top) ~= "table" then
    fail({}, "the stack file must return a table { components = { ... } }, got " .. typeof(top))
  end
  fields({}, top, TOP_FIELDS)
  local name = rawget(top, "name")
  if name ~= nil then
    nonempty({ "name" }, name)
    if not name:find(STACK_NAME) or #name > 63 then
      fail({ "name" }, "bad stack name " .. show(name) ..
        " (use lowercase letters, digits, '_', '.', '-'; start with a letter or digit)")
    end
  else
    local base = ctx.dir:match("([^/]+)$")
    name = base and base:lower()
    if not name or not name:find(STACK_NAME) or #name > 63 then
      fail({}, string.format(
        "the stack is named after its directory, but %s is not a valid stack name; set name = \"...\"",
        show(base or ctx.dir)))
    end
  end

  local raw = rawget(top, "components")
  if raw == nil then fail({}, "missing field 'components' (a table of name = { image = ..., ... })") end
  if type(raw) ~= "table" then must({ "components" }, raw, "a table of name = component") end
  local count = 0
  for _ in next, raw do
    count = count + 1
    if count > MAX_COMPONENTS then fail({ "components" }, string.format("more than %d components", MAX_COMPONENTS)) end
  end
  local names = {}
  for k in next, raw do
    if type(k) ~= "string" then
      if type(k) == "number" then
        fail({ "components" },
          string.format("must be a table of name = component, but has a list item [%s]", tostring(k)))
      end
      fail({ "components" }, "has a key of type " .. type(k))
    end
    names[#names + 1] = k
  end
  if #names == 0 then fail({ "components" }, "no components defined") end
  table.sort(names)
  ctx.names = names
  for _, n in ipairs(names) do
    if not n:find(COMPONENT_NAME) or #n > 63 then
      fail({ "components", n }, "bad component name (use lowercase letters, digits, '_' and '-', " ..
        "starting with a letter or digit; it becomes a container name and a DNS alias)")
    end
  end

  local on_event = rawget(top, "on_event")
  if on_event ~= nil then on_event = validator.field.on_event(ctx, { "on_event" }, on_event) end
  local nets = stack_networks(rawget(top, "networks"))
  local comps = {}
  for _, n in ipairs(names) do comps[n] = component(ctx, n, rawget(raw, n)) end
  local excluded = {}
  names = apply_profiles(ctx, comps, names, excluded)
  if #names == 0 then fail({ "components" }, "no component runs with the active profiles") end
  check_links(comps, names)
  check_addresses(nets, comps, names)
  -- A copy: the stack file can reach the sandbox's own list through the __required global.
  local required = {}
  for _, f in ipairs(ctx.required) do
    if type(f) == "string" then required[#required + 1] = f end
  end
  return {
    name = name, file = ctx.file, dir = ctx.dir, components = comps,
    order = start_order(comps, names), required = required, on_event = on_event,
    profiles = ctx.profiles or {}, excluded = excluded, networks = nets,
  }
end

-- Loading ---------------------------------------------------------------------------------------

local function one_line(msg)
  msg = msg:gsub("\nstack traceback:.*$", "")
  msg = printable((msg:gsub("%s*[\r\n]+%s*", " ")))
  return cut(msg, MAX_MESSAGE)
end

local function error_text(e)
  if type(e) == "string" then return e end
  if type(e) == "number" then return tostring(e) end
  -- Never tostring a table here: its __tostring is user code running outside any budget.
  return "(error object is a " .. type(e) .. " value)"
end

local function is_budget(e)
  return type(e) == "string" and (e:find("^budget exceeded") or e:find("^[^\n]-:%d+: budget exceeded")) and true
end

local function absolute(path, cwd)
  if path:sub(1, 1) == "/" then return normpath(path) end
  if cwd and cwd:sub(1, 1) == "/" then return join(cwd, path) end
  return normpath(path)
end

-- The working directory for relative stack paths: opts.cwd, else $PWD when the file is found
-- there (a parent that chdir'ed without updating PWD would otherwise mislead us).
local function working_dir(path, opts)
  if opts.cwd then return opts.cwd end
  local pwd = os.getenv("PWD")
  if pwd and pwd:sub(1, 1) == "/" and (opts.source or file_kind(join(pwd, path)) == "file") then return pwd end
  return (fs.cwd())   -- nil when the directory is gone
end

-- stack.load(path[, opts]) -> stack | nil, message, required_files
-- opts.cwd: directory relative paths start from; opts.source: the text, instead of reading
-- path; opts.budget: { instructions =, seconds = } for running the file.
function stack.load(path, opts)
  opts = opts or {}
  if type(path) ~= "string" or path == "" then error("stack.load: expected a file path", 2) end
  local file = absolute(path, working_dir(path, opts))
  local ctx = { file = file, dir = dirname(file), required = {}, profiles = opts.profiles }

  local src = opts.source
  if not src then
    local k = file_kind(path)
    if k and k ~= "file" then return nil, one_line(path .. ": is " .. (KINDS[k] or KINDS.other) .. ", not a stack file"), {} end
    local read, err, code = fs.read(path, sandbox.MAX_CHUNK)
    if code == "EFBIG" then
      return nil, one_line(string.format("%s: the stack file is too large (more than %d bytes)", path, sandbox.MAX_CHUNK)), {}
    end
    if not read then return nil, one_line((err:gsub("^cannot read ([^\n]*): ([^:]*)$", "%1: %2"))), {} end
    src = read
  end
  if #src > sandbox.MAX_CHUNK then
    return nil, one_line(string.format("%s: the stack file is too large (more than %d bytes)", path, sandbox.MAX_CHUNK)), {}
  end
  ctx.source = src

  local env = sandbox.env(ctx.dir, dirname(path))
  src = sandbox.source_text(src)
  ctx.required = rawget(env, "__required")
  if src:byte(1) == 27 then return nil, one_line(path .. ": binary chunks are not allowed"), {} end
  -- Every message starts with the stack file's name, even when Lua's own position names
  -- another chunk (a helper file, a string given to load) or none at all.
  local function located(msg)
    if msg:sub(1, #path + 1) ~= path .. ":" then return path .. ": " .. msg end
    return msg
  end
  local chunk, err = load(src, "@" .. path, "t", env)
  if not chunk then return nil, one_line(located(error_text(err))), ctx.required end

  ctx.text = blank_comments(src)
  local k, first, second, table_name, outer_name = repeated_key(ctx.text)
  if k then
    local lines = string.format("(lines %d and %d)", line_at(ctx.text, first), line_at(ctx.text, second))
    local what
    if table_name == "components" then
      what = string.format("component '%s' is defined twice %s", keyname(k), lines)
    elseif outer_name == "components" and table_name then
      what = string.format("component '%s': field '%s' is given twice %s", keyname(table_name), keyname(k), lines)
    else
      what = string.format("key '%s' is given twice in one table %s; Lua would keep only the last", keyname(k), lines)
    end
    return nil, one_line(string.format("%s:%d: %s", path, line_at(ctx.text, second), what)), ctx.required
  end

  -- The chunk runs in a coroutine of its own inside the budget, so a stack file that yields
  -- gets a clear message whatever the budget does with a yield.
  local function run()
    local co = coroutine.create(chunk)
    local res = table.pack(coroutine.resume(co))
    -- Turned to text here: a budget may pass only strings through.
    if not res[1] then error(error_text(res[2]), 0) end
    if coroutine.status(co) ~= "dead" then
      error("the stack file yielded (coroutine.yield outside a coroutine of its own)", 0)
    end
    return table.unpack(res, 2, res.n)
  end
  local core = require "mw.core"
  local r = table.pack(core.budget(run, opts.budget or BUDGET))
  if not r[1] then
    local e = r[2]
    if is_budget(e) then
      return nil, one_line(path .. ": stack file ran too long (budget exceeded)"), ctx.required
    end
    return nil, one_line(located(error_text(e))), ctx.required
  end
  if r.n < 2 then
    return nil, one_line(path .. ": the stack file must return a table { components = { ... } }, " ..
      "but returned nothing"), ctx.required
  end

  local ok, res = pcall(validate, ctx, r[2])
  if ok then return res end
  if getmetatable(res) ~= Failure then
    -- A bug in this file, not in the stack: still one line, but say whose it is.
    return nil, one_line(path .. ": internal error while validating: " .. error_text(res)), ctx.required
  end
  local line = (#res.path > 0 or res.extra ~= nil) and locate(ctx, res.path, res.extra) or nil
  local w = where(res.path)
  local msg = string.format("%s%s: %s%s", path, line and (":" .. line) or "", w ~= "" and (w .. ": ") or "", res.msg)
  return nil, one_line(msg), ctx.required
end

-- The plan `mw check` prints ---------------------------------------------------------------

local function heartbeat_summary(hb)
  if not hb then return "no heartbeat" end
  local what
  if hb.kind == "http" then
    what = string.format("http :%d%s", hb.port, hb.path)
  elseif hb.kind == "tcp" then
    what = string.format("tcp :%d", hb.port)
  else
    what = "exec " .. table.concat(hb.exec, " ")
  end
  return string.format("heartbeat %s every %s (timeout %s, %d misses, grace %s)%s", what,
    duration.format(hb.interval), duration.format(hb.timeout), hb.misses, duration.format(hb.grace),
    hb.check and ", with check" or "")
end

-- The plan's words for the host and engine fields a component sets (issue 19), in field order.
local function host_summary(c)
  local out = {}
  if c.network_mode then out[#out + 1] = "network_mode " .. c.network_mode end
  if c.pull ~= "missing" then out[#out + 1] = "pull " .. c.pull end
  if c.privileged then out[#out + 1] = "privileged" end
  if #c.devices > 0 then
    local ds = {}
    for _, d in ipairs(c.devices) do ds[#ds + 1] = d.host .. (d.container ~= d.host and (":" .. d.container) or "") end
    out[#out + 1] = "devices " .. table.concat(ds, ", ")
  end
  if c.gpus then out[#out + 1] = "gpus " .. (c.gpus.ids and table.concat(c.gpus.ids, ",") or
    (c.gpus.count == -1 and "all" or tostring(c.gpus.count))) end
  local keys = {}
  for k in pairs(c.sysctls) do keys[#keys + 1] = k end
  table.sort(keys)
  for i, k in ipairs(keys) do keys[i] = k .. "=" .. c.sysctls[k] end
  if #keys > 0 then out[#out + 1] = "sysctls " .. table.concat(keys, ", ") end
  for _, f in ipairs { "dns", "dns_search", "dns_opt", "security_opt", "group_add" } do
    if #c[f] > 0 then out[#out + 1] = f .. " " .. table.concat(c[f], ", ") end
  end
  if c.ipc then out[#out + 1] = "ipc " .. c.ipc end
  if c.pid then out[#out + 1] = "pid " .. c.pid end
  if c.oom_score_adj then out[#out + 1] = "oom_score_adj " .. c.oom_score_adj end
  if c.logging == "engine" then
    out[#out + 1] = "logs: the engine's default"
  elseif c.logging.driver ~= "json-file" or c.logging.options["max-size"] ~= "10m" or c.logging.options["max-file"] ~= "3" then
    local o = {}
    for k, v in pairs(c.logging.options) do o[#o + 1] = k .. "=" .. v end
    table.sort(o)
    out[#out + 1] = "logs " .. c.logging.driver .. (#o > 0 and (" " .. table.concat(o, ",")) or "")
  end
  for _, v in ipairs(c.volumes) do
    if v.create then out[#out + 1] = "creates " .. v.source .. " if missing" end
  end
  return out
end

function stack.plan(s)
  local lines = { string.format("stack %s (%s): %d component%s in start order", s.name, s.file,
    #s.order, #s.order == 1 and "" or "s") }
  for i, name in ipairs(s.order) do
    local c = s.components[name]
    local parts = {}
    parts[#parts + 1] = c.image and ("image " .. c.image) or ("build " .. relative(s.dir, c.build.context))
    local deps = {}
    for d, cond in pairs(c.depends_on) do deps[#deps + 1] = string.format("%s (%s)", d, cond) end
    table.sort(deps)
    parts[#parts + 1] = #deps > 0 and ("after " .. table.concat(deps, ", ")) or "no dependencies"
    parts[#parts + 1] = heartbeat_summary(c.heartbeat)
    if c.scale ~= 1 then parts[#parts + 1] = "scale " .. c.scale end
    if #c.ports > 0 then
      local ps = {}
      for _, p in ipairs(c.ports) do
        ps[#ps + 1] = string.format("%s:%s->%d/%s", p.ip, p.host or "*", p.container, p.proto)
      end
      parts[#parts + 1] = "ports " .. table.concat(ps, ", ")
    end
    if #c.volumes > 0 then
      local vs = {}
      for _, v in ipairs(c.volumes) do
        local src = v.type == "volume" and (v.name .. (v.external and " (external)" or ""))
          or v.type == "bind" and relative(s.dir, v.source) or "tmpfs"
        vs[#vs + 1] = src .. ":" .. v.target .. (v.read_only and ":ro" or "")
      end
      parts[#parts + 1] = "volumes " .. table.concat(vs, ", ")
    end
    if #c.networks > 0 then
      local ns = {}
      for _, e in ipairs(c.networks) do
        if type(e) == "table" then
          local extra = {}
          if e.external then extra[#extra + 1] = "external " .. e.external end
          if e.ipv4_address then extra[#extra + 1] = e.ipv4_address end
          if e.aliases then extra[#extra + 1] = "aliases " .. table.concat(e.aliases, " ") end
          ns[#ns + 1] = e.name .. (#extra > 0 and (" (" .. table.concat(extra, ", ") .. ")") or "")
        else
          ns[#ns + 1] = e
        end
      end
      parts[#parts + 1] = "networks " .. table.concat(ns, ", ")
    end
    if #c.secrets > 0 then
      -- Names only: not even the file's path, let alone its content.
      local names = {}
      for _, sec in ipairs(c.secrets) do names[#names + 1] = sec.name end
      parts[#parts + 1] = "secrets " .. table.concat(names, ", ")
    end
    if c.env_file and #c.env_file > 0 then
      -- The files only: their values are never shown.
      local files, names, n = {}, {}, 0
      for _, f in ipairs(c.env_file) do
        files[#files + 1] = relative(s.dir, f.path)
        for k in pairs(f.vars) do
          if not names[k] then names[k] = true n = n + 1 end
        end
      end
      parts[#parts + 1] = string.format("env_file %s (%d variable%s)", table.concat(files, ", "), n, n == 1 and "" or "s")
    end
    if c.profiles and #c.profiles > 0 then parts[#parts + 1] = "profiles " .. table.concat(c.profiles, ", ") end
    if c.job then parts[#parts + 1] = "job (runs to completion)" end
    for _, h in ipairs(host_summary(c)) do parts[#parts + 1] = h end
    if #c.configs > 0 then
      local cs = {}
      for _, cf in ipairs(c.configs) do cs[#cs + 1] = relative(s.dir, cf.source) .. ":" .. cf.target .. ":ro" end
      parts[#parts + 1] = "configs " .. table.concat(cs, ", ")
    end
    parts[#parts + 1] = "restart " .. policy.describe(c.restart)
    if c.on_event or s.on_event then parts[#parts + 1] = "on_event " .. (c.on_event and "hook" or "stack's hook") end
    if c.standby then
      parts[#parts + 1] = "warm standby (one frozen spare" .. (c.standby.keep_failed and ", failed ones kept" or "") .. ")"
    end
    lines[#lines + 1] = string.format("%2d. %s: %s", i, name, table.concat(parts, "; "))
  end
  local nets = {}
  for n, d in pairs(s.networks or {}) do
    local what = {}
    if d.external then what[#what + 1] = "external " .. (d.name or n) .. ", never created or removed" end
    if d.subnet then what[#what + 1] = "subnet " .. d.subnet end
    if d.gateway then what[#what + 1] = "gateway " .. d.gateway end
    if d.internal then what[#what + 1] = "internal" end
    nets[#nets + 1] = n .. (#what > 0 and (" (" .. table.concat(what, ", ") .. ")") or "")
  end
  if #nets > 0 then
    table.sort(nets)
    lines[#lines + 1] = "networks: " .. table.concat(nets, "; ")
  end
  local left = {}
  for name, profiles in pairs(s.excluded or {}) do
    left[#left + 1] = string.format("%s (profile %s)", name, table.concat(profiles, " or "))
  end
  if #left > 0 then
    table.sort(left)
    lines[#lines + 1] = "left out, their profiles not active: " .. table.concat(left, ", ")
  end
  return table.concat(lines, "\n")
end

-- For callers that print values the way validation messages do (mw import, mw inspect).
stack.printable = printable

return stack
