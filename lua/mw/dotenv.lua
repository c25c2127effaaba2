-- The environment side of `mw import`: .env and env_file syntax, and compose's ${VAR}
-- interpolation with its defaults, bounded in nesting and in the text it makes.
local yamlvalue = require "mw.yamlvalue"

local dotenv = {}

local compact = yamlvalue.compact

-- -> list of { key, value } (value nil: "KEY" alone, taken from the environment) | nil, err
local function parse_dotenv(text)
  text = text:gsub("\r\n", "\n")
  local out, pos, lineno, n = {}, 1, 0, #text
  while pos <= n do
    lineno = lineno + 1
    local eol = text:find("\n", pos, true) or n + 1
    local line = text:sub(pos, eol - 1)
    local nextpos = eol + 1
    local body = line:match("^%s*(.-)%s*$")
    if body ~= "" and body:sub(1, 1) ~= "#" then
      local lead = #line:match("^%s*")
      local exp = body:match("^export%s+()")
      if exp then lead = lead + exp - 1; body = body:sub(exp) end
      local key, eq = body:match("^([%w_.-]+)%s*()=")
      if not key then
        if not body:find("^[%w_.-]+$") then
          return nil, string.format("line %d: expected NAME=value, got %s", lineno, compact(body))
        end
        out[#out + 1] = { body }
      else
        local vstart = pos + lead + eq          -- just past "="
        while text:sub(vstart, vstart):find("^[ \t]$") do vstart = vstart + 1 end
        local q = text:sub(vstart, vstart)
        local value
        if q == '"' or q == "'" then
          local buf, j = {}, vstart + 1
          while true do
            local c = text:sub(j, j)
            if c == "" then return nil, string.format("line %d: unterminated %s quote", lineno, q) end
            if c == q then break end
            if q == '"' and c == "\\" then
              local d = text:sub(j + 1, j + 1)
              local esc = ({ n = "\n", t = "\t", r = "\r", ['"'] = '"', ["\\"] = "\\", ["$"] = "$" })[d]
              if esc then c = esc; j = j + 1 end
            end
            if c == "\n" then lineno = lineno + 1 end
            buf[#buf + 1] = c
            j = j + 1
          end
          value = table.concat(buf)
          nextpos = (text:find("\n", j, true) or n) + 1
        else
          value = text:sub(vstart, eol - 1)
          value = value:gsub("%s+#.*$", ""):match("^(.-)%s*$")
        end
        out[#out + 1] = { key, value }
      end
    end
    pos = nextpos
  end
  return out
end

-- Interpolation -------------------------------------------------------------------------------

-- Each ${...} finds its end by a scan of what it holds, and a default is interpolated on its
-- own: the work is the text times the nesting, so the nesting is bounded (20 000 levels never
-- finished). Compose files nest two or three levels at most.
dotenv.MAX_NESTING = 32
-- Text interpolation may make, counted at every level: `$X` a million times with a 1 KB X is
-- a gigabyte. The same bound as the YAML loader's (yaml.max_bytes).
dotenv.MAX_EXPANDED = 16 * 1024 * 1024

local function emit(vars, out, piece)
  vars.expanded = (vars.expanded or 0) + #piece
  if vars.expanded > dotenv.MAX_EXPANDED then
    vars.fail(string.format("interpolation makes more than %d MiB of text", dotenv.MAX_EXPANDED // 1048576))
  end
  out[#out + 1] = piece
end

-- ${VAR}, ${VAR:-default}, ${VAR-default}, ${VAR:?err}, ${VAR?err}, ${VAR:+alt}, ${VAR+alt},
-- $VAR and $$, as compose does; a default may itself hold ${...}, up to MAX_NESTING deep.
local function interpolate(vars, s, where)
  if not s:find("$", 1, true) then return s end
  local out, i, n = {}, 1, #s
  while i <= n do
    local a = s:find("$", i, true)
    if not a then emit(vars, out, s:sub(i)); break end
    emit(vars, out, s:sub(i, a - 1))
    local c = s:sub(a + 1, a + 1)
    if c == "$" then
      emit(vars, out, "$")
      i = a + 2
    elseif c == "{" then
      local depth, j = 1, a + 2
      while true do
        j = s:find("[{}]", j)
        if not j then break end
        if s:byte(j) == 125 then                      -- "}"
          depth = depth - 1
          if depth == 0 then break end
        elseif s:byte(j - 1) == 36 then               -- "${"
          depth = depth + 1
          if depth > dotenv.MAX_NESTING then
            vars.fail(string.format("%s: ${...} nested deeper than %d levels", where == "" and "(top level)" or where,
              dotenv.MAX_NESTING))
          end
        end
        j = j + 1
      end
      if depth ~= 0 then
        local shown = compact(s)
        if #shown > 80 then shown = shown:sub(1, 72) .. "... (" .. #s .. " bytes)" end
        vars.fail(string.format("%s: unterminated ${ in %s", where, shown))
      end
      local body = s:sub(a + 2, j - 1)
      local name, op, rest = body:match("^([%a_][%w_]*)(:?[-?+])(.*)$")
      if not name then
        name = body:match("^([%a_][%w_]*)$")
        if not name then vars.fail(string.format("%s: bad interpolation ${%s}", where, body)) end
      end
      local val = vars.lookup(name)
      local set, nonempty = val ~= nil, val ~= nil and val ~= ""
      if op == nil then
        if not set then
          vars.warn(string.format("variable '%s' is not set; using an empty string", name))
          val = ""
        end
      elseif op == ":-" then
        if not nonempty then val = interpolate(vars, rest, where) end
      elseif op == "-" then
        if not set then val = interpolate(vars, rest, where) end
      elseif op == ":?" or op == "?" then
        if (op == ":?" and not nonempty) or (op == "?" and not set) then
          vars.fail(string.format("%s: required variable %s is missing a value%s", where, name,
            rest ~= "" and (": " .. interpolate(vars, rest, where)) or ""))
        end
      elseif op == ":+" then
        val = nonempty and interpolate(vars, rest, where) or ""
      else
        val = set and interpolate(vars, rest, where) or ""
      end
      emit(vars, out, val)
      i = j + 1
    elseif c:find("^[%a_]") then
      local name = s:match("^[%a_][%w_]*", a + 1)
      local val = vars.lookup(name)
      if val == nil then
        vars.warn(string.format("variable '%s' is not set; using an empty string", name))
        val = ""
      end
      emit(vars, out, val)
      i = a + 1 + #name
    else
      emit(vars, out, "$")
      i = a + 1
    end
  end
  return table.concat(out)
end

-- A copy of the tree with every string value interpolated (keys are left alone, as compose does).
local function interpolate_tree(vars, v, where)
  if type(v) == "string" then return interpolate(vars, v, where) end
  if type(v) ~= "table" then return v end
  local out = {}
  for k, x in pairs(v) do
    local w = where
    if type(k) == "string" then w = where == "" and k or (where .. "." .. k) end
    out[k] = interpolate_tree(vars, x, w)
  end
  return out
end

-- dotenv.parse(text) -> list of { key, value } | nil, "line N: problem"
dotenv.parse = parse_dotenv
-- dotenv.interpolate_tree(vars, value, where) -> a copy with every string interpolated. vars:
-- lookup(name) -> value | nil; warn(message); fail(message), which must not return; vars.expanded
-- counts the text made so far.
dotenv.interpolate_tree = interpolate_tree

return dotenv
