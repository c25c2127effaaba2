-- Finding the line of a bad value in a stack file: a heuristic over the source text, since
-- the value itself no longer knows where it was written. Also finds a key a table gives twice.
local srcline = {}


-- Replaces comments with spaces (keeping newlines) so a key named in a comment is not found.
local function blank_comments(src)
  local out, i, n = {}, 1, #src
  local function blank(s) return (s:gsub("[^\n]", " ")) end
  while i <= n do
    local a = src:find("[-\"'%[]", i)
    if not a then out[#out + 1] = src:sub(i); break end
    out[#out + 1] = src:sub(i, a - 1)
    local c = src:sub(a, a)
    if c == "-" and src:sub(a + 1, a + 1) == "-" then
      local eq = src:match("^%[(=*)%[", a + 2)
      local e
      if eq then
        e = select(2, src:find("]" .. eq .. "]", a + 2, true)) or n
      else
        e = (src:find("\n", a, true) or n + 1) - 1
      end
      out[#out + 1] = blank(src:sub(a, e))
      i = e + 1
    elseif c == "[" and src:find("^%[=*%[", a) then
      local eq = src:match("^%[(=*)%[", a)
      local e = select(2, src:find("]" .. eq .. "]", a, true)) or n
      out[#out + 1] = src:sub(a, e)
      i = e + 1
    elseif c == '"' or c == "'" then
      local j = a + 1
      while true do
        local b = src:find("[\\\n" .. c .. "]", j)
        if not b then j = n; break end
        if src:sub(b, b) == "\\" then j = b + 2 else j = b; break end
      end
      out[#out + 1] = src:sub(a, j)
      i = j + 1
    else
      out[#out + 1] = c
      i = a + 1
    end
  end
  return table.concat(out)
end

local function find_key(text, key, init, limit)
  if type(key) ~= "string" or #key > 200 or key == "" then return nil end
  local k = key:gsub("[%p%c]", "%%%0")
  local a = key:find("^[%a_][%w_]*$") and text:find("%f[%w_]" .. k .. "%s*=%f[^=]", init)
  local b = text:find("%[%s*[\"']" .. k .. "[\"']%s*%]%s*=", init)
  local p = (a and b) and math.min(a, b) or a or b
  if p and limit and p >= limit then return nil end
  return p
end

local function line_at(text, pos)
  local _, n = text:sub(1, pos):gsub("\n", "")
  return n + 1
end

-- Lua lets a table constructor give one key twice and keeps the last, so a component defined
-- twice, or a field given twice, would vanish silently. This walks the text (comments blanked)
-- keeping a stack of table constructors and code blocks, and returns the first key a
-- constructor repeats: key, first position, second position, the constructor's own key and
-- the key of the constructor around it.
local BLOCK_OPEN = { ["function"] = true, ["if"] = true, ["do"] = true, ["repeat"] = true }
local BLOCK_CLOSE = { ["end"] = true, ["until"] = true }
local KEY_BEFORE = { ["{"] = true, [","] = true, [";"] = true }

local function repeated_key(text)
  local open, i = {}, 1
  local prev, last_key
  local function key(k, pos)
    local top = open[#open]
    local first = top.keys[k]
    if first then return true, k, first, pos, top.name, open[#open - 1] and open[#open - 1].name end
    top.keys[k] = pos
    last_key = k
  end
  while true do
    i = text:find("%S", i)
    if not i then return nil end
    local c = text:sub(i, i)
    local top = open[#open]
    local in_table = top and top.kind == "table" and KEY_BEFORE[prev]
    if c:find("[%a_]") then
      local _, e = text:find("^[%a_][%w_]*", i)
      local word = text:sub(i, e)
      if BLOCK_OPEN[word] then
        open[#open + 1] = { kind = "block" }
      elseif BLOCK_CLOSE[word] then
        if not top or top.kind ~= "block" then return nil end
        open[#open] = nil
      elseif in_table and text:find("^%s*=[^=]", e + 1) then
        local found, a, b, d, f, g = key(word, i)
        if found then return a, b, d, f, g end
      end
      prev, i = word, e + 1
    elseif c == '"' or c == "'" then
      local j = i + 1
      while true do
        local b = text:find("[\\\n" .. c .. "]", j)
        if not b then return nil end
        if text:sub(b, b) == "\\" then j = b + 2 else j = b; break end
      end
      prev, i = "string", j + 1
    elseif c == "[" and text:find("^%[=*%[", i) then
      local eq = text:match("^%[(=*)%[", i)
      local _, e = text:find("]" .. eq .. "]", i, true)
      if not e then return nil end
      prev, i = "string", e + 1
    elseif c == "[" and in_table then
      local _, e, k = text:find("^%[%s*\"([^\"\\\n]*)\"%s*%]%s*=[^=]", i)
      if not k then _, e, k = text:find("^%[%s*'([^'\\\n]*)'%s*%]%s*=[^=]", i) end
      if k then
        local found, a, b, d, f, g = key(k, i)
        if found then return a, b, d, f, g end
        prev, i = "=", e
      else
        prev, i = "[", i + 1
      end
    elseif c == "{" then
      -- Named by the key just before "=" (components = {...}), if that is what precedes it.
      open[#open + 1] = { kind = "table", keys = {}, name = prev == "=" and last_key or nil }
      prev, last_key, i = "{", nil, i + 1
    elseif c == "}" then
      if not top or top.kind ~= "table" then return nil end
      open[#open] = nil
      prev, i = "}", i + 1
    elseif text:find("^==", i) or text:find("^~=", i) or text:find("^<=", i) or text:find("^>=", i) then
      prev, i = "op", i + 2
    else
      if c ~= "=" then last_key = nil end
      prev, i = c, i + 1
    end
  end
end

-- Looks for the keys of path in order (components, then the component, then the field and
-- its subfields), each after the previous one and, below a component, before the next
-- component. The component is tried where the components table names it and where it is
-- first assigned (local web = {...}); the deeper match wins. Returns nil when the component
-- itself is not found.
local function locate(ctx, path, extra)
  if not ctx.source then return nil end
  ctx.text = ctx.text or blank_comments(ctx.source)
  local text = ctx.text
  local keys = table.move(path, 1, #path, 1, {})
  if extra ~= nil then keys[#keys + 1] = extra end

  local function bound(p, k)
    local limit
    if #ctx.names > 300 then return nil end
    for _, other in ipairs(ctx.names) do
      if other ~= k then
        local q = find_key(text, other, p + 1)
        if q and (not limit or q < limit) then limit = q end
      end
    end
    return limit
  end

  -- Walks keys[from..] starting at pos; returns the last line found and how many were found.
  local function walk(from, pos, limit, line, depth)
    for i = from, #keys do
      local k = keys[i]
      if type(k) == "string" then
        local p = find_key(text, k, pos, limit)
        if not p then break end
        line, depth, pos = line_at(text, p), depth + 1, p + 1
      end
    end
    return line, depth
  end

  if keys[1] ~= "components" or type(keys[2]) ~= "string" then
    local line, depth = walk(1, 1, nil, nil, 0)
    return depth > 0 and line or nil
  end
  local best_line, best_depth
  local after = find_key(text, "components", 1)
  for _, start in ipairs { after and after + 1 or 1, 1 } do
    local p = find_key(text, keys[2], start)
    if p then
      local line, depth = walk(3, p + 1, bound(p, keys[2]), line_at(text, p), 1)
      if not best_depth or depth > best_depth then best_line, best_depth = line, depth end
    end
  end
  return best_line
end


srcline.blank_comments = blank_comments
srcline.line_at = line_at
srcline.repeated_key = repeated_key
srcline.locate = locate

return srcline
