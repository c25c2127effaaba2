-- Demultiplexes the Engine's framed output (logs, attach, exec) and reassembles lines; pure
-- Lua with no I/O so it can be tested byte by byte without an engine.
--
-- Frame format (notes/docker-engine-api.md §6, moby pkg/stdcopy): an 8-byte header, byte 0
-- the stream (0 stdin, 1 stdout, 2 stderr, 3 an error from the daemon itself), bytes 1..3
-- zero, bytes 4..7 the payload length big-endian; then the payload. The transport cuts
-- this anywhere, so a header and a payload may each arrive in many pieces.
local frames = {}

local HEADER = 8
local STREAMS = { [0] = "stdin", [1] = "stdout", [2] = "stderr", [3] = "error" }
frames.STREAMS = STREAMS

local Demux = {}
Demux.__index = Demux

-- A demultiplexer starts waiting for a header.
function frames.new()
  return setmetatable({
    head = "",      -- header bytes gathered so far (< 8)
    stream = nil,   -- stream name of the frame whose payload is being gathered
    need = 0,       -- payload bytes still missing
    parts = nil,    -- payload pieces gathered so far (a list, joined once: no quadratic copy)
    broken = nil,   -- set once a header made no sense; later input is refused
    count = 0,      -- frames delivered
  }, Demux)
end

-- Feeds one chunk; returns the list of frames it completed, { {stream, payload}, ... },
-- and, when a header is malformed, an error message as second value (the input is then
-- not a framed stream: most often a TTY container read as if it were framed).
function Demux:feed(chunk)
  local out = {}
  if self.broken then return out, self.broken end
  local pos, len = 1, #chunk
  while pos <= len do
    if self.stream == nil then
      local take = HEADER - #self.head
      self.head = self.head .. chunk:sub(pos, pos + take - 1)
      pos = pos + take
      if #self.head < HEADER then break end
      local kind, z1, z2, z3 = self.head:byte(1, 4)
      local name = STREAMS[kind]
      if not name or z1 ~= 0 or z2 ~= 0 or z3 ~= 0 then
        self.broken = string.format("bad frame header %q (not a multiplexed stream?)", self.head)
        return out, self.broken
      end
      local size = string.unpack(">I4", self.head, 5)
      self.head = ""
      if size == 0 then
        self.count = self.count + 1
        out[#out + 1] = { name, "" }
      else
        self.stream, self.need, self.parts = name, size, {}
      end
    else
      local take = math.min(self.need, len - pos + 1)
      self.parts[#self.parts + 1] = chunk:sub(pos, pos + take - 1)
      pos = pos + take
      self.need = self.need - take
      if self.need == 0 then
        self.count = self.count + 1
        out[#out + 1] = { self.stream, table.concat(self.parts) }
        self.stream, self.parts = nil, nil
      end
    end
  end
  return out
end

-- True when input stopped in the middle of a frame (a truncated stream).
function Demux:pending()
  return self.stream ~= nil or #self.head > 0
end

local Lines = {}
Lines.__index = Lines

-- A line assembler keeps one partial line per stream: a frame need not end on a newline,
-- and the rest of that line comes in the next frame *of the same stream*, with frames of
-- the other stream possibly in between. A line longer than max_line is cut (a program
-- that never writes a newline must not grow memory without bound).
function frames.lines(max_line)
  return setmetatable({ partial = {}, max_line = max_line or 64 * 1024 }, Lines)
end

local function strip_cr(s)
  if s:byte(-1) == 13 then return s:sub(1, -2) end
  return s
end

-- Feeds one frame's payload; returns { {stream, line}, ... } of completed lines, without
-- their LF (and without a CR before it).
function Lines:feed(stream, payload)
  local out = {}
  local text = payload
  local prev = self.partial[stream]
  if prev then text = prev .. payload end
  local start = 1
  while true do
    local nl = text:find("\n", start, true)
    if not nl then break end
    out[#out + 1] = { stream, strip_cr(text:sub(start, nl - 1)) }
    start = nl + 1
  end
  local rest = start <= #text and text:sub(start) or nil
  while rest and #rest > self.max_line do
    out[#out + 1] = { stream, rest:sub(1, self.max_line) }
    rest = rest:sub(self.max_line + 1)
    if rest == "" then rest = nil end
  end
  self.partial[stream] = rest
  return out
end

-- At end of input: the unterminated lines still held, one per stream, in stream-name order.
function Lines:flush()
  local names = {}
  for name in pairs(self.partial) do names[#names + 1] = name end
  table.sort(names)
  local out = {}
  for _, name in ipairs(names) do
    out[#out + 1] = { name, strip_cr(self.partial[name]) }
    self.partial[name] = nil
  end
  return out
end

return frames
