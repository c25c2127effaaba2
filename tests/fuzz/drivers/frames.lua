-- Fuzz driver for lua/mw/frames.lua: the byte-stream demux fed in random cuts must agree with
-- one feed of the whole stream; the line assembler must hand out lines without newlines.
local frames = require "mw.frames"

local function same(a, b)
  if #a ~= #b then return false end
  for i = 1, #a do
    if a[i][1] ~= b[i][1] or a[i][2] ~= b[i][2] then return false end
  end
  return true
end

return function(data)
  local x = data:byte(1) or 0
  local stream = data:sub(2)
  local whole = frames.new()
  local all, werr = whole:feed(stream)
  local d = frames.new()
  local got, gerr = {}, nil
  local pos = 1
  while pos <= #stream do
    x = (x * 1103515245 + 12345) % 2147483648
    local n = 1 + x % 23
    local out, err = d:feed(stream:sub(pos, pos + n - 1))
    for _, f in ipairs(out) do got[#got + 1] = f end
    if err then gerr = err break end
    pos = pos + n
  end
  if not same(all, got) then fail(string.format("cut feed gave %d frames, whole feed %d", #got, #all)) end
  if (werr == nil) ~= (gerr == nil) then fail("error differs: " .. tostring(werr) .. " / " .. tostring(gerr)) end
  if not werr and whole:pending() ~= d:pending() then fail("pending differs") end
  local again = d:feed("\1\0\0\0\0\0\0\0")       -- after an error, nothing more comes out
  if gerr and #again > 0 then fail("frames after an error") end
  local max = 8 + (data:byte(1) or 0) % 64
  local lines = frames.lines(max)
  local total = 0
  for _, f in ipairs(all) do
    if not frames.STREAMS[0] then fail("streams table") end
    total = total + #f[2]
    for _, l in ipairs(lines:feed(f[1], f[2])) do
      if l[2]:find("\n", 1, true) then fail("a line with a newline") end
      if l[1] ~= f[1] and l[1] ~= "stdout" and l[1] ~= "stderr" and l[1] ~= "stdin" and l[1] ~= "error" then
        fail("a line of an unknown stream " .. tostring(l[1]))
      end
    end
  end
  for _, l in ipairs(lines:flush()) do
    if l[2]:find("\n", 1, true) then fail("a flushed line with a newline") end
    if #l[2] > max then fail("a flushed partial line longer than max_line") end
  end
end
