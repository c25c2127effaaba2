-- A queue contender for tests: enters the line, reports each step as a line in OUTFILE,
-- and steps down on SIGTERM/SIGINT or when a --force newcomer replaces it.
-- usage: mw script tests/lib/queue_child.lua DIR STACK OUTFILE [force]
-- lines: "entered PID NAME", "waiting PID PREDPID AHEAD", "active PID",
--        "quit PID" (signal while waiting), "left PID" (signal while active), "replaced PID"
local core = require "mw.core"
local signal = require "mw.signal"
local queue = require "mw.queue"

local dir, stack, outfile, force = ...
local pid = core.pid()

-- one short O_APPEND write per line, so lines of several children never interleave
local function say(fmt, ...)
  local f = assert(io.open(outfile, "a"))
  f:write(string.format(fmt, ...), "\n")
  f:close()
end

-- Runs each function as a task; returns the index and results of the first to finish and
-- cancels the others (their watchers close through the queue's to-be-closed guards).
local function first(...)
  local wake = core.cond()
  local winner
  local tasks = {}
  for i, fn in ipairs { ... } do
    tasks[i] = core.spawn(function()
      local r = table.pack(fn())
      if not winner then winner = { i, r } end
      wake:notify()
    end, "child race " .. i)
  end
  wake:wait()
  for _, task in ipairs(tasks) do core.cancel(task) end
  wake:close()
  return winner[1], table.unpack(winner[2], 1, winner[2].n)
end

-- installed before entering: a TERM must never find the default action (death with the
-- file left behind is a different test)
local sig = signal.watch { "TERM", "INT" }
local q = assert(queue.enter { dir = dir, stack = stack, force = force == "force" })
say("entered %d %s", pid, q.name)

local which, ok, why = first(
  function() return sig:wait() end,
  function()
    return q:wait(function(info) say("waiting %d %d %d", pid, info.pid, info.ahead) end)
  end)
if which == 1 then
  q:leave()
  say("quit %d", pid)
elseif not ok then
  q:leave()
  say("%s %d", why == "replaced" and "replaced" or ("error " .. tostring(why)), pid)
else
  say("active %d", pid)
  local w, r, rwhy = first(function() return sig:wait() end, function() return q:replaced() end)
  q:leave()
  if w == 1 then say("left %d", pid)
  elseif r == "replaced" then say("replaced %d", pid)
  else say("error %s %d", tostring(rwhy), pid) end
end
sig:close()
return 0
