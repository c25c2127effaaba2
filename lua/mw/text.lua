-- Text for one-line messages and generated Lua source: the one escaper of user bytes, which
-- keeps valid UTF-8 and printable ASCII and turns everything else into escapes.
local text = {}

-- text.escape(s, special, esc) -> s with printable ASCII and valid UTF-8 kept as they are, and
-- every other byte (control characters, DEL, a byte of no valid UTF-8 sequence, and the ASCII
-- bytes listed in special, the inside of a pattern class such as '"\\') replaced by esc(byte).
function text.escape(s, special, esc)
  local pattern = "[%c" .. (special or "") .. "\128-\255]"
  local out, i, n = {}, 1, #s
  while i <= n do
    -- runs of plain ASCII go in one piece: byte by byte, a 15 MB value took 33 s
    local j = s:find(pattern, i)
    if not j then out[#out + 1] = s:sub(i) break end
    if j > i then out[#out + 1] = s:sub(i, j - 1) end
    local c = s:byte(j)
    local run_end = c >= 0x80 and ((s:find("[^\128-\255]", j) or n + 1) - 1)
    if run_end and utf8.len(s, j, run_end) then
      out[#out + 1] = s:sub(j, run_end)       -- a run of valid UTF-8 goes as it is too
      i = run_end + 1
    else
      local len = c >= 0xF0 and 4 or c >= 0xE0 and 3 or c >= 0xC2 and 2 or 1
      local ch = s:sub(j, j + len - 1)
      if c >= 0x80 and len > 1 and utf8.len(ch) == 1 then
        out[#out + 1] = ch
        i = j + len
      else
        out[#out + 1] = esc(c)
        i = j + 1
      end
    end
  end
  return table.concat(out)
end

local function hex(c) return string.format("\\x%02x", c) end
text.hex = hex

-- Control characters and stray bytes as \xNN, so whatever a file holds a message stays one
-- printable line.
function text.printable(s) return text.escape(s, nil, hex) end

-- s cut to n bytes with "..." after, backing off to a character boundary so the cut does not
-- leave half a UTF-8 sequence.
function text.cut(s, n)
  if #s <= n then return s end
  local e = n
  while e > 0 and (s:byte(e + 1) or 0) & 0xC0 == 0x80 do e = e - 1 end
  return s:sub(1, e) .. "..."
end

local LUA_ESCAPES = { [34] = '\\"', [92] = "\\\\", [10] = "\\n", [9] = "\\t", [13] = "\\r" }

-- A Lua string literal that keeps valid UTF-8 readable and escapes everything else.
function text.lua_quote(s)
  return '"' .. text.escape(s, '"\\', function(c) return LUA_ESCAPES[c] or hex(c) end) .. '"'
end

return text
