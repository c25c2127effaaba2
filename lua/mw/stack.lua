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

local TOP_FIELDS = { "name", "components", "on_event" }

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
  local comps = {}
  for _, n in ipairs(names) do comps[n] = component(ctx, n, rawget(raw, n)) end
  check_links(comps, names)
  -- A copy: the stack file can reach the sandbox's own list through the __required global.
  local required = {}
  for _, f in ipairs(ctx.required) do
    if type(f) == "string" then required[#required + 1] = f end
  end
  return {
    name = name, file = ctx.file, dir = ctx.dir, components = comps,
    order = start_order(comps, names), required = required, on_event = on_event,
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
  local ctx = { file = file, dir = dirname(file), required = {} }

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
        local src = v.type == "volume" and v.name or v.type == "bind" and relative(s.dir, v.source) or "tmpfs"
        vs[#vs + 1] = src .. ":" .. v.target .. (v.read_only and ":ro" or "")
      end
      parts[#parts + 1] = "volumes " .. table.concat(vs, ", ")
    end
    if #c.secrets > 0 then
      -- Names only: not even the file's path, let alone its content.
      local names = {}
      for _, sec in ipairs(c.secrets) do names[#names + 1] = sec.name end
      parts[#parts + 1] = "secrets " .. table.concat(names, ", ")
    end
    if #c.configs > 0 then
      local cs = {}
      for _, cf in ipairs(c.configs) do cs[#cs + 1] = relative(s.dir, cf.source) .. ":" .. cf.target .. ":ro" end
      parts[#parts + 1] = "configs " .. table.concat(cs, ", ")
    end
    parts[#parts + 1] = "restart " .. policy.describe(c.restart)
    if c.on_event or s.on_event then parts[#parts + 1] = "on_event " .. (c.on_event and "hook" or "stack's hook") end
    lines[#lines + 1] = string.format("%2d. %s: %s", i, name, table.concat(parts, "; "))
  end
  return table.concat(lines, "\n")
end

-- For callers that print values the way validation messages do (mw import, mw inspect).
stack.printable = printable

return stack
