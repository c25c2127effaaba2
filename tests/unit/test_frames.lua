-- Unit tests of lua/mw/frames.lua: the 8-byte frame demux of logs/exec output and the
-- per-stream line assembler, cut at every byte position. Runs under `mw script` or plain
-- lua5.4 with package.path "lua/?.lua;tests/lib/?.lua".
if not pcall(require, "t") then package.path = "tests/lib/?.lua;" .. package.path end
local t = require "t"
local frames = require "mw.frames"

local function frame(kind, payload)
  return string.pack(">I1I1I1I1I4", kind, 0, 0, 0, #payload) .. payload
end

-- Both kinds interleaved, a zero-length frame, a line split over two stdout frames with a
-- stderr frame in between, a frame without trailing newline at the very end, a daemon error.
local PIECES = {
  { 1, "hello\n" },
  { 2, "oops\r\n" },
  { 1, "" },
  { 1, "part" },
  { 2, "x\ny\n" },
  { 1, "ial line\nnext" },
  { 1, " one\n" },
  { 2, "tail without newline" },
  { 3, "error from daemon" },
}
local NAMES = { [1] = "stdout", [2] = "stderr", [3] = "error" }

local WIRE, WANT_FRAMES = {}, {}
for i, p in ipairs(PIECES) do
  WIRE[i] = frame(p[1], p[2])
  WANT_FRAMES[i] = { NAMES[p[1]], p[2] }
end
WIRE = table.concat(WIRE)

local WANT_LINES = {
  { "stdout", "hello" },
  { "stderr", "oops" },
  { "stderr", "x" },
  { "stderr", "y" },
  { "stdout", "partial line" },
  { "stdout", "next one" },
}

-- Runs chunks through a demux and a line assembler (stream 3 kept apart, as the logs reader
-- surfaces it as an error rather than a line).
local function run(chunks)
  local d = frames.new()
  local la = frames.lines()
  local got_frames, got_lines, errors = {}, {}, {}
  for _, c in ipairs(chunks) do
    local fs, err = d:feed(c)
    t.eq(err, nil, "feed error")
    for _, f in ipairs(fs) do
      got_frames[#got_frames + 1] = f
      if f[1] == "error" then
        errors[#errors + 1] = f[2]
      else
        for _, l in ipairs(la:feed(f[1], f[2])) do got_lines[#got_lines + 1] = l end
      end
    end
  end
  t.eq(d:pending(), false, "nothing pending at end")
  return got_frames, got_lines, errors, la:flush()
end

t.test("whole stream in one chunk", function()
  local fs, ls, errs, rest = run({ WIRE })
  t.same(fs, WANT_FRAMES)
  t.same(ls, WANT_LINES)
  t.same(errs, { "error from daemon" })
  t.same(rest, { { "stderr", "tail without newline" } })
end)

t.test("cut in two at every byte position", function()
  for cut = 0, #WIRE do
    local fs, ls, errs, rest = run({ WIRE:sub(1, cut), WIRE:sub(cut + 1) })
    t.same(fs, WANT_FRAMES, "frames, cut at " .. cut)
    t.same(ls, WANT_LINES, "lines, cut at " .. cut)
    t.same(errs, { "error from daemon" }, "errors, cut at " .. cut)
    t.same(rest, { { "stderr", "tail without newline" } }, "rest, cut at " .. cut)
  end
end)

t.test("cut in three at every pair of positions", function()
  for a = 0, #WIRE do
    for b = a, #WIRE, 7 do
      local fs, ls = run({ WIRE:sub(1, a), WIRE:sub(a + 1, b), WIRE:sub(b + 1) })
      t.same(fs, WANT_FRAMES, "frames, cuts " .. a .. "," .. b)
      t.same(ls, WANT_LINES, "lines, cuts " .. a .. "," .. b)
    end
  end
end)

t.test("byte by byte", function()
  local chunks = {}
  for i = 1, #WIRE do chunks[i] = WIRE:sub(i, i) end
  local fs, ls, errs, rest = run(chunks)
  t.same(fs, WANT_FRAMES)
  t.same(ls, WANT_LINES)
  t.same(errs, { "error from daemon" })
  t.same(rest, { { "stderr", "tail without newline" } })
end)

t.test("zero-length frame is a frame and no line", function()
  local d = frames.new()
  local fs = d:feed(frame(1, "") .. frame(2, ""))
  t.same(fs, { { "stdout", "" }, { "stderr", "" } })
  local la = frames.lines()
  t.same(la:feed("stdout", ""), {})
  t.same(la:flush(), {})
end)

t.test("partial line waits for the next frame of the same stream", function()
  local d, la = frames.new(), frames.lines()
  local lines = {}
  for _, f in ipairs(d:feed(frame(1, "abc") .. frame(2, "err\n") .. frame(1, "def\n"))) do
    for _, l in ipairs(la:feed(f[1], f[2])) do lines[#lines + 1] = l end
  end
  t.same(lines, { { "stderr", "err" }, { "stdout", "abcdef" } })
end)

t.test("stream 3 (daemon error) is surfaced", function()
  local d = frames.new()
  local fs = d:feed(frame(3, "Error grabbing logs: bad"))
  t.same(fs, { { "error", "Error grabbing logs: bad" } })
end)

t.test("large frame gathered from many chunks", function()
  local big = string.rep("0123456789abcdef", 8192) -- 128 KiB
  local wire = frame(1, big) .. frame(2, "z")
  local d = frames.new()
  local got = {}
  for i = 1, #wire, 16384 do
    for _, f in ipairs(d:feed(wire:sub(i, i + 16383))) do got[#got + 1] = f end
  end
  t.eq(#got, 2)
  t.eq(got[1][1], "stdout")
  t.eq(got[1][2] == big, true, "payload intact")
  t.same(got[2], { "stderr", "z" })
end)

t.test("truncated stream is pending", function()
  local d = frames.new()
  t.same(d:feed(frame(1, "hello"):sub(1, 10)), {})
  t.eq(d:pending(), true)
  local d2 = frames.new()
  d2:feed("\1\0\0")
  t.eq(d2:pending(), true)
end)

t.test("unframed input is refused with a message", function()
  local d = frames.new()
  local fs, err = d:feed("hello world, I am a tty\n")
  t.same(fs, {})
  t.match(err, "bad frame header")
  local _, again = d:feed(frame(1, "x"))
  t.match(again, "bad frame header", "stays broken")
end)

t.test("over-long line is cut at max_line", function()
  local la = frames.lines(4)
  t.same(la:feed("stdout", "abcdefghij"), { { "stdout", "abcd" }, { "stdout", "efgh" } })
  t.same(la:feed("stdout", "k\n"), { { "stdout", "ijk" } })
end)

os.exit(t.run())
