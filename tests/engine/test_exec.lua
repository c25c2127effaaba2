-- `mw exec` against the real engine: output apart on stdout and stderr, the command's exit
-- status, stdin with -i (a file and a pipe), -t under a pseudo-terminal (util-linux script),
-- signals passed on, with and without a running mw, and the bad input lines.
local t = require "t"
local fs = require "mw.fs"
local proc = require "mw.proc"
local E = require "engine"
local run = require "run"

local e = E.engine()

local function mw(args, opts)
  opts = opts or {}
  opts.timeout = opts.timeout or 60
  return run.mw(args, opts)
end

local function lines(s)
  local n = 0
  for _ in s:gmatch("[^\n]*\n") do n = n + 1 end
  return n
end

-- One stack for the file: a long-running shell and one that has exited, brought up by an
-- mw that is then stopped (the containers stay; exec needs no running mw).
local shared
local function stack()
  if shared then return shared end
  local file, name = E.stack("exec", [[
return { name = "NAME", components = {
  shell = { image = "IMAGE", command = { "sleep", "100000" } },
  box = { image = "IMAGE", command = { "sleep", "100000" }, scale = 2 },
} }]])
  local h = E.mw({ "run", "--log-format", "json", file })
  local by = E.wait_running(name, { "shell" })
  t.wait_for(function()
    by = E.containers(name)
    local up = 0
    for _, c in ipairs(by.box or {}) do if c.State == "running" then up = up + 1 end end
    return up == 2
  end, 60, "both box instances running")
  h.stop()
  shared = { file = file, name = name, shell = by.shell[1].Id }
  return shared
end

t.test("exec: stdout and stderr apart, the command's exit status is mw's", function()
  local s = stack()
  local code, out, errs, secs = mw({ "exec", "shell", "--stack", s.name, "--", "sh", "-c",
    "echo out; echo err >&2; echo out2; exit 3" })
  local load = (fs.read("/proc/loadavg") or "?"):match("^[^\n]*")
  print(string.format("# one mw exec, start to exit: %.3f s (load %s)", secs, load))
  t.eq(code, 3, errs)
  t.eq(out, "out\nout2\n")
  t.eq(errs, "err\n")
  -- the stack file names the stack too; no "--" needed; the command's own options are its own
  code, out, errs = mw({ "exec", s.file, "shell", "sh", "-c", "echo $0 $1", "--help", "--label" })
  t.eq(code, 0, errs)
  t.eq(out, "--help --label\n")
  -- an instance by its key, -e, -w
  code, out, errs = mw({ "exec", "-e", "GREETING=hi", "-w", "/bin", "--stack", s.name, "box-2", "sh", "-c",
    "echo $GREETING $(pwd) $HOSTNAME" })
  t.eq(code, 0, errs)
  local box2
  for _, c in ipairs(E.containers(s.name).box) do
    if c.Labels["mw.instance"] == "2" then box2 = c end
  end
  -- its host name is its network holder's (mw.holder), the container's own when it has none
  local named = E.net_of(assert(E.engine():inspect(box2.Id)))
  t.eq(out, "hi /bin " .. named.Id:sub(1, 12) .. "\n", "ran in instance 2")
  -- a command that does not exist: the engine's status (126/127) and its message
  code, out, errs = mw({ "exec", "shell", "--stack", s.name, "/no/such/program" })
  print(string.format("# a missing program: exit %s, stderr %q", tostring(code), errs))
  t.ok(code == 126 or code == 127, "126 or 127, not 0: " .. tostring(code))
  -- the engine writes why on the command's stdout (moby's exec start), as docker shows it
  t.match(out .. errs, "/no/such/program")
end)

t.test("exec -i passes stdin on, from a file and from a pipe, and the command sees its end", function()
  local s = stack()
  local input = {}
  for i = 1, 20000 do input[#input + 1] = string.format("line %05d\n", i) end
  input = table.concat(input)      -- 220 KB: more than one socket buffer
  local code, out, errs = mw({ "exec", "-i", "shell", "--stack", s.name, "cat" }, { stdin = input })
  t.eq(code, 0, errs)
  t.eq(#out, #input)
  t.ok(out == input, "cat gave back what it read")
  -- a pipe (the loop reads it), and wc only answers after the end of its input
  code, out, errs = run.program({ "/bin/sh", "-c", "printf 'a\\nb\\nc\\n' | " .. run.MW
    .. " exec --interactive shell --stack " .. s.name .. " -- sh -c 'wc -l; exit 4'" }, { timeout = 60 })
  t.eq(code, 4, errs)
  t.match(out, "^%s*3%s*$")
  -- without -i the command's stdin is closed
  code, out, errs = mw({ "exec", "shell", "--stack", s.name, "cat" }, { stdin = "ignored\n" })
  t.eq(code, 0, errs)
  t.eq(out, "")
end)

t.test("exec -t under a pseudo-terminal: a tty inside, its size, the exit status, the terminal restored", function()
  local s = stack()
  -- script(1) gives mw a terminal; stty sets its size first; after mw, stty -a shows whether
  -- mw left the terminal as it found it (icanon and echo on, not raw). Before API 1.42 the
  -- size reaches the command's terminal by a resize just after it started: the command
  -- waits for it (busybox stty size says nothing while the size is 0x0).
  local inner = "stty rows 33 cols 101; " .. run.MW .. " exec -it shell --stack " .. s.name
    .. " sh -c 'test -t 0 && echo IN-TTY; s=; for i in $(seq 600); do s=$(stty size 2>/dev/null);"
    .. " [ -n \"$s\" ] && break; sleep 0.1; done; echo SIZE=$s; exit 5'; echo MW-EXIT=$?; stty -a"
  local code, out, errs = run.program({ "script", "-qec", inner, "/dev/null" }, { timeout = 60 })
  t.eq(code, 0, errs)
  t.match(out, "IN%-TTY", out)
  t.match(out, "SIZE=33 101", "the window size was passed on: " .. out)
  t.match(out, "MW%-EXIT=5")
  local after = out:match("MW%-EXIT=5(.*)$") or ""
  t.ok(after:find("[^-]icanon") and after:find("[^-]echo "), "the terminal is cooked again: " .. after)
  -- -t alone (no -i): output comes raw, not framed, with the exit status
  inner = run.MW .. " exec -t shell --stack " .. s.name .. " sh -c 'echo hello; exit 6'; echo MW-EXIT=$?"
  code, out, errs = run.program({ "script", "-qec", inner, "/dev/null" }, { timeout = 60 })
  t.eq(code, 0, errs)
  t.match(out, "hello\r*\n")
  t.match(out, "MW%-EXIT=6")
end)

t.test("exec -t passes a new window size on (SIGWINCH)", function()
  local s = stack()
  local mark = "/winch-" .. E.run_id
  local d = E.tmpdir()
  -- mw runs in the background of the terminal's session (the same process group, so the
  -- kernel's SIGWINCH reaches it); once the command saw the first size it leaves a mark,
  -- the shell then changes the size and the command waits to see the new one
  local script_file = d .. "/winch.sh"
  assert(fs.write_atomic(script_file, table.concat({
    "stty rows 33 cols 101",
    run.MW .. " exec -t shell --stack " .. s.name .. " sh -c '"
      .. "for i in $(seq 600); do [ \"$(stty size 2>/dev/null)\" = \"33 101\" ] && break; sleep 0.1; done; "
      .. "touch " .. mark .. "; "
      .. "for i in $(seq 600); do s=$(stty size 2>/dev/null); [ \"$s\" = \"40 120\" ] && break; sleep 0.1; done; "
      .. "echo SIZE=$s; exit 7' &",
    "for i in $(seq 600); do " .. run.MW .. " exec shell --stack " .. s.name .. " test -f " .. mark
      .. " && break; sleep 0.1; done",
    "stty rows 40 cols 120",
    "wait $!; echo MW-EXIT=$?",
  }, "\n") .. "\n", 420))
  local code, out, errs = run.program({ "script", "-qec", "sh " .. script_file, "/dev/null" }, { timeout = 120 })
  t.eq(code, 0, errs)
  t.match(out, "SIZE=40 120", out)
  t.match(out, "MW%-EXIT=7", out)
end)

t.test("exec passes SIGTERM and SIGINT on to the command, whose status is mw's", function()
  local s = stack()
  for _, sig in ipairs { "TERM", "INT" } do
    local d = E.tmpdir()
    local outf = d .. "/out"
    local p = assert(proc.spawn { args = { run.MW, "exec", "shell", "--stack", s.name, "sh", "-c",
      "trap 'echo got " .. sig .. "; exit 42' " .. sig .. "; echo ready; while :; do sleep 1; done" },
      env = run.env(), out = outf })
    t.wait_for(function() return (fs.read(outf) or ""):find("ready", 1, true) end, 30, "the command started")
    p:kill(sig)
    local code = p:wait(30)
    if not code then p:kill("KILL") p:wait(5) end
    p:close()
    t.eq(code, 42, sig .. ": " .. (fs.read(outf) or ""))
    t.match(fs.read(outf) or "", "got " .. sig)
  end
end)

t.test("exec whose reader went away (| head): the command is stopped, mw exits 141", function()
  local s = stack()
  local d = E.tmpdir()
  local code, out, errs = run.program({ "/bin/sh", "-c", "( " .. run.MW .. " exec shell --stack " .. s.name
    .. " yes mw-exec-yes; echo $? > " .. d .. "/rc ) | head -n 1" }, { timeout = 60 })
  t.eq(code, 0, errs)
  t.eq(out, "mw-exec-yes\n")
  t.eq((fs.read(d .. "/rc") or ""):match("%d+"), "141")
  t.wait_for(function()
    local _, ps = mw({ "exec", "shell", "--stack", s.name, "ps" })
    return not ps:find("mw-exec-yes", 1, true)
  end, 30, "the command gone from the container")
end)

-- A loopback TCP relay to the engine's unix socket, passing each direction's end on: the
-- engine at DOCKER_HOST=tcp://127.0.0.1:PORT without opening the engine itself to TCP.
local function relay(upstream)
  local net = require "mw.net"
  local core = require "mw.core"
  local srv = assert(net.listen("127.0.0.1", 0))
  local tasks, conns = {}, {}
  local function pipe(from, to)
    while true do
      local chunk = from:read()
      if not chunk or not to:write(chunk) then break end
    end
    pcall(to.shutdown, to)
  end
  tasks[1] = core.spawn(function()
    while true do
      local c = srv:accept()
      if not c then return end
      local up = net.connect("unix:" .. upstream, nil, 5)
      conns[#conns + 1] = c
      if up then
        conns[#conns + 1] = up
        tasks[#tasks + 1] = core.spawn(function() pipe(c, up) end, "relay up")
        tasks[#tasks + 1] = core.spawn(function() pipe(up, c) end, "relay down")
      end
    end
  end, "relay accept")
  return srv:port(), function()
    srv:close()
    for _, c in ipairs(conns) do c:close() end
    for _, task in ipairs(tasks) do
      local st = task:status()
      if st ~= "done" and st ~= "failed" and st ~= "cancelled" then core.cancel(task) end
    end
  end
end

t.test("exec over DOCKER_HOST=tcp:// (a loopback relay to the engine): the same streams and status", function()
  local s = stack()
  local host = os.getenv("DOCKER_HOST")
  local port, stop = relay(host and host:match("^unix://(/.+)$") or "/var/run/docker.sock")
  local ok, err = pcall(function()
    local env = { "DOCKER_HOST=tcp://127.0.0.1:" .. port }
    local code, out, errs = mw({ "exec", "-i", "shell", "--stack", s.name, "sh", "-c", "cat; echo err >&2; exit 9" },
      { env = env, stdin = "through tcp\n" })
    t.eq(code, 9, errs)
    t.eq(out, "through tcp\n")
    t.eq(errs, "err\n")
  end)
  stop()
  assert(ok, err)
end)

t.test("exec works the same while an mw runs the stack", function()
  local s = stack()
  local h = E.mw({ "run", "--log-format", "json", s.file })
  h.wait_event({ event = "adopted" }, 60)
  local code, out, errs = mw({ "exec", "shell", "--stack", s.name, "sh", "-c", "echo out; echo err >&2; exit 3" })
  t.eq(code, 3, errs)
  t.eq(out, "out\n")
  t.eq(errs, "err\n")
  h.stop()
end)

t.test("exec bad input: one line each, documented status, nothing run", function()
  local s = stack()
  local function execs()
    local info = assert(e:inspect(s.shell))
    return #(info.ExecIDs or {})
  end
  local before = execs()
  local cases = {
    { { "exec", "nosuch", "--stack", s.name, "true" }, 125, "^mw: no component nosuch in stack " },
    { { "exec", "shell", "--stack", "nosuch-" .. E.run_id, "true" }, 125, "^mw: no stack nosuch%-" },
    { { "exec", "nosuch-" .. E.run_id, "true" }, 125, "^mw: no component nosuch" },
    { { "exec", "shell", "--stack", s.name }, 2, "^mw: exec: no command" },
    { { "exec", "shell", "--stack", s.name, "--" }, 2, "^mw: exec: no command" },
    { { "exec", "--stack", s.name }, 2, "^mw: usage: mw exec" },
    { { "exec", "-x", "shell", "true" }, 2, "^mw: unknown option %-x" },
    { { "exec", "-it", "shell", "--stack", s.name, "true" }, 2, "needs stdin to be a terminal" },
  }
  for _, c in ipairs(cases) do
    local code, out, errs = mw(c[1])
    local what = table.concat(c[1], " ")
    t.eq(code, c[2], what .. ": " .. errs)
    t.eq(out, "", what)
    t.eq(lines(errs), 1, what .. ": " .. errs)
    t.match(errs, c[3], what)
  end
  t.eq(execs(), before, "no exec was created")
  -- the prologue exec shares with kill and inspect (lookup.component_args) says the same
  for _, cmd in ipairs { "kill", "inspect" } do
    local code, out, errs = mw({ cmd, "shell", "--stack", "nosuch-" .. E.run_id })
    t.eq(code, 1, cmd)
    t.eq(out, "")
    t.eq(errs, "mw: no stack nosuch-" .. E.run_id .. ": mw has no container of it on this engine\n")
  end

  -- a component that is not running: stopped here by hand (no mw runs to restart it)
  local box1
  for _, c in ipairs(E.containers(s.name).box) do
    if c.Labels["mw.instance"] ~= "2" then box1 = c end
  end
  assert(e:stop(box1.Id, 1))
  local code, out, errs = mw({ "exec", "box", "--stack", s.name, "true" })
  t.eq(code, 0, "box still has a running instance, exec picks it: " .. errs)
  t.eq(out, "")
  code, out, errs = mw({ "exec", "box-1", "--stack", s.name, "true" })
  print("# " .. errs)
  t.eq(code, 125, errs)
  t.eq(out, "")
  t.eq(lines(errs), 1, errs)
  t.match(errs, "^mw: exec: component box%-1 of stack " .. s.name:gsub("%-", "%%-") .. " is not running")
  t.eq(assert(e:inspect(box1.Id)).State.Status, "exited", "left as it was")
end)

os.exit(E.run(t))
