-- Unit tests of mw.tar: the .dockerignore parser and matcher, and tar.pack checked by
-- extracting its archives with the system's GNU tar.
if not pcall(require, "t") then package.path = "tests/lib/?.lua;" .. package.path end
local t = require "t"
local tar = require "mw.tar"
local tmp = require "tmp"

local function q(s) return "'" .. s:gsub("'", "'\\''") .. "'" end

local function sh(cmd)
  local ok = os.execute(cmd)
  if not ok then error("command failed: " .. cmd, 2) end
end

local function capture(cmd)
  local p = assert(io.popen(cmd))
  local out = p:read("a")
  p:close()
  return out
end

local function write(path, content, mode)
  local dir = path:match("^(.*)/[^/]*$")
  if dir then sh("mkdir -p " .. q(dir)) end
  local f = assert(io.open(path, "wb"))
  f:write(content)
  f:close()
  if mode then sh(string.format("chmod %o %s", mode, q(path))) end
end

local function read(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("a")
  f:close()
  return s
end

local scratch, scratch_file = tmp.dir, tmp.file

-- Packs dir with opts, checks the archive's framing, extracts it; returns the ordered
-- list of names in the archive, the extraction directory and the archive itself.
local function pack_and_extract(dir, opts)
  local archive, err = tar.pack(dir, opts)
  t.ok(archive, err)
  t.eq(#archive % 512, 0, "archive is made of 512-byte blocks")
  t.eq(archive:sub(-1024), string.rep("\0", 1024), "archive ends with two zero blocks")
  local file = scratch_file()
  write(file, archive)
  local names = {}
  for line in capture("tar -tf " .. q(file)):gmatch("[^\n]+") do names[#names + 1] = line end
  local out = scratch()
  sh("tar -xf " .. q(file) .. " -C " .. q(out))
  return names, out, archive
end

local function has(list, v)
  for _, x in ipairs(list) do if x == v then return true end end
  return false
end

local function mode_of(path) return capture("stat -c %a " .. q(path)):gsub("%s+$", "") end


-- tar.parse_ignore -----------------------------------------------------------

t.test("parse_ignore: comments, blanks, trimming, CRLF", function()
  local text = "# a comment\r\n\r\n  node_modules  \r\n*.log\r\n\t\r\n#another\n  # not a comment\n"
  t.same(tar.parse_ignore(text), { "node_modules", "*.log", "# not a comment" })
end)

t.test("parse_ignore: cleans like filepath.Clean and keeps '!'", function()
  local text = table.concat({
    "/leading", "./dot", "a//b///c", "a/./b", "a/b/../c", "trailing/", "/x/../../y",
    "!/exc/", "! spaced", "!./a/../b", "..", "../up", "/", "!",
  }, "\n")
  t.same(tar.parse_ignore(text), {
    "leading", "dot", "a/b/c", "a/b", "a/c", "trailing", "y",
    "!exc", "!spaced", "!b", "..", "../up", "/", "!",
  })
end)

t.test("parse_ignore: BOM, no final newline, empty text", function()
  t.same(tar.parse_ignore("\xef\xbb\xbf#c\nlast"), { "last" })
  t.same(tar.parse_ignore(""), {})
  t.same(tar.parse_ignore("\n\n\r\n"), {})
end)

-- tar.ignored ----------------------------------------------------------------

t.test("ignored: wildcards", function()
  local ig = tar.ignored
  t.eq(ig({ "*" }, "anything"), true, "* top level")
  t.eq(ig({ "*" }, "a/b"), true, "* excludes a dir and so what is beneath it")
  t.eq(ig({ "*.go" }, "main.go"), true)
  t.eq(ig({ "*.go" }, "cmd/main.go"), false, "* does not cross /")
  t.eq(ig({ "*/*.go" }, "cmd/main.go"), true)
  t.eq(ig({ "?.txt" }, "a.txt"), true)
  t.eq(ig({ "?.txt" }, "ab.txt"), false)
  t.eq(ig({ "a?c" }, "a/c"), false, "? does not match /")
  t.eq(ig({ "?.txt" }, "é.txt"), true, "? matches one UTF-8 character")
  t.eq(ig({ "[a-c].txt" }, "b.txt"), true)
  t.eq(ig({ "[a-c].txt" }, "d.txt"), false)
  t.eq(ig({ "[^a].txt" }, "a.txt"), false)
  t.eq(ig({ "[^a].txt" }, "b.txt"), true)
  t.eq(ig({ "[!a].txt" }, "b.txt"), true, "! negates a class too")
  t.eq(ig({ "[!a].txt" }, "a.txt"), false)
  t.eq(ig({ "[xa-c9]" }, "9"), true, "several ranges and singles")
  t.eq(ig({ "x[^a]y" }, "x/y"), false, "a class never matches /")
  t.eq(ig({ "\\*.txt" }, "*.txt"), true, "escaped *")
  t.eq(ig({ "\\*.txt" }, "a.txt"), false)
  t.eq(ig({ "[\\]]" }, "]"), true, "escape inside a class")
  t.eq(ig({ "README.md" }, "README.md"), true, "literal")
  t.eq(ig({ "README.md" }, "READMEXmd"), false, "'.' is literal")
  t.eq(ig({ "README" }, "docs/README"), false, "patterns are anchored at the root")
end)

t.test("ignored: ** matches any number of directories", function()
  local ig = tar.ignored
  t.eq(ig({ "**/*.go" }, "main.go"), true, "zero directories")
  t.eq(ig({ "**/*.go" }, "a/b/c/main.go"), true)
  t.eq(ig({ "**/*.go" }, "a/b/main.c"), false)
  t.eq(ig({ "a/**/z" }, "a/z"), true)
  t.eq(ig({ "a/**/z" }, "a/b/c/z"), true)
  t.eq(ig({ "a/**/z" }, "b/a/z"), false)
  t.eq(ig({ "dir/**" }, "dir/x"), true)
  t.eq(ig({ "dir/**" }, "dir/x/y/z"), true)
  t.eq(ig({ "dir/**" }, "dir"), false, "dir/** keeps dir itself")
  t.eq(ig({ "**" }, "x"), true)
  t.eq(ig({ "**" }, "x/y/z"), true)
  t.eq(ig({ "**/node_modules" }, "web/app/node_modules/pkg/index.js"), true)
end)

t.test("ignored: exceptions, last match wins", function()
  local ig = tar.ignored
  t.eq(ig({ "*.md", "!README.md" }, "README.md"), false)
  t.eq(ig({ "*.md", "!README.md" }, "CHANGES.md"), true)
  t.eq(ig({ "!README.md", "*.md" }, "README.md"), true, "a later plain pattern re-excludes")
  t.eq(ig({ "*.md", "!README*.md", "README-secret.md" }, "README-secret.md"), true)
  t.eq(ig({ "*.md", "!README*.md", "README-secret.md" }, "README-public.md"), false)
  t.eq(ig({ "docs", "!docs/README.md" }, "docs"), true)
  t.eq(ig({ "docs", "!docs/README.md" }, "docs/README.md"), false)
  t.eq(ig({ "docs", "!docs/README.md" }, "docs/other.md"), true)
  t.eq(ig({ "docs", "!docs/README.md" }, "docs/sub/README.md"), true)
  t.eq(ig({ "**", "!keep/**" }, "keep/a/b"), false)
  t.eq(ig({ "**", "!keep/**" }, "other"), true)
  t.eq(ig({ "!x" }, "x"), false, "an exception alone excludes nothing")
  t.eq(ig({}, "x"), false, "no patterns")
  t.eq(ig({ "*", "**" }, "."), false, "never the whole context")
end)

t.test("ignored: patterns and paths are cleaned", function()
  local ig = tar.ignored
  t.eq(ig({ "/build" }, "build/out.o"), true, "leading /")
  t.eq(ig({ "./build" }, "build"), true, "./x")
  t.eq(ig({ "build/" }, "build/x"), true, "trailing /")
  t.eq(ig({ "a//b" }, "a/b"), true)
  t.eq(ig({ "a/../b" }, "b"), true)
  t.eq(ig({ "  spaced  " }, "spaced"), true)
  t.eq(ig({ "x" }, "./x"), true, "path ./x")
  t.eq(ig({ "x" }, "/x/"), true, "path /x/")
end)

t.test("ignored: with parse_ignore", function()
  local pats = tar.parse_ignore("# build output\r\n/bin\r\n*.tmp\r\n\r\n!keep.tmp\r\n**/.git\r\n")
  t.eq(tar.ignored(pats, "bin/tool"), true)
  t.eq(tar.ignored(pats, "x.tmp"), true)
  t.eq(tar.ignored(pats, "keep.tmp"), false)
  t.eq(tar.ignored(pats, "sub/x.tmp"), false)
  t.eq(tar.ignored(pats, "vendor/lib/.git/HEAD"), true)
  t.eq(tar.ignored(pats, "# build output"), false, "comment lines are not patterns")
end)

t.test("ignored: malformed patterns never match", function()
  local ig = tar.ignored
  t.eq(ig({ "[abc" }, "[abc"), false)
  t.eq(ig({ "[abc" }, "a"), false)
  t.eq(ig({ "[]" }, "]"), false)
  t.eq(ig({ "[^" }, "x"), false)
  t.eq(ig({ "abc\\" }, "abc\\"), false, "trailing backslash")
  t.eq(ig({ "*", "[" }, "x"), true, "a malformed pattern does not break the others")
  t.eq(ig({ string.rep("*", 200) .. "x" }, string.rep("a", 5000)), false, "no blow-up")
  t.eq(ig({ string.rep("**/", 50) .. "z" }, string.rep("a/", 300) .. "z"), true)
end)

t.test("ignored/parse_ignore: misuse raises", function()
  t.ok(not pcall(tar.ignored, "x", "y"))
  t.ok(not pcall(tar.ignored, {}, nil))
  t.ok(not pcall(tar.ignored, { 1 }, "y"))
  t.ok(not pcall(tar.parse_ignore, nil))
  t.ok(not pcall(tar.pack, nil))
  t.ok(not pcall(tar.pack, "/tmp", 5))
  t.ok(not pcall(tar.pack, "/tmp", { ignore = "x" }))
  t.ok(not pcall(tar.pack, "/tmp", { extra = { x = 1 } }))
  t.ok(not pcall(tar.pack, "/tmp", { extra = { [".."] = "x" } }))
  t.ok(not pcall(tar.pack, "/tmp", { dockerfile = true }))
end)

-- tar.pack -------------------------------------------------------------------

t.test("pack: files, dirs, modes, mtime, symlink, sorted order", function()
  local dir = scratch()
  write(dir .. "/b.txt", "bee\n", tonumber("644", 8))
  write(dir .. "/a.sh", "#!/bin/sh\necho hi\n", tonumber("755", 8))
  write(dir .. "/sub/inner.txt", string.rep("x", 1000))
  write(dir .. "/sub/empty.bin", "")
  sh("mkdir -p " .. q(dir .. "/emptydir"))
  sh("chmod 750 " .. q(dir .. "/emptydir"))
  sh("ln -s sub/inner.txt " .. q(dir .. "/link"))
  sh("ln -s /nonexistent/target " .. q(dir .. "/dangling"))
  sh("mkfifo " .. q(dir .. "/fifo"))
  sh("touch -h -d @1600000000 " .. q(dir .. "/b.txt"))
  local names, out, archive = pack_and_extract(dir)
  t.same(names, { "a.sh", "b.txt", "dangling", "emptydir/", "link",
    "sub/", "sub/empty.bin", "sub/inner.txt" })
  t.eq(read(out .. "/b.txt"), "bee\n")
  t.eq(read(out .. "/a.sh"), "#!/bin/sh\necho hi\n")
  t.eq(read(out .. "/sub/inner.txt"), string.rep("x", 1000))
  t.eq(read(out .. "/sub/empty.bin"), "")
  t.eq(mode_of(out .. "/a.sh"), "755")
  t.eq(mode_of(out .. "/b.txt"), "644")
  t.eq(mode_of(out .. "/emptydir"), "750")
  t.eq(capture("stat -c %Y " .. q(out .. "/b.txt")), "1600000000\n", "mtime preserved")
  t.eq(capture("readlink " .. q(out .. "/link")), "sub/inner.txt\n", "symlink kept, not followed")
  t.eq(capture("readlink " .. q(out .. "/dangling")), "/nonexistent/target\n")
  t.eq(capture("find " .. q(out) .. " -type p"), "", "fifo skipped")
  -- owner 0/0, empty owner names, and the same bytes on a second run
  local file = scratch_file()
  write(file, archive)
  t.match(capture("tar --numeric-owner -tvf " .. q(file)), "^%-rwxr%-xr%-x 0/0 ")
  t.eq(archive:sub(109, 124), ("0000000\0"):rep(2), "uid and gid 0")
  t.eq(archive:sub(266, 329), string.rep("\0", 64), "uname and gname empty")
  t.eq(tar.pack(dir), archive, "deterministic")
end)

t.test("pack: long paths and long link targets use pax headers", function()
  local dir = scratch()
  local seg = string.rep("d", 60)
  local long = seg .. "/" .. seg .. "/" .. "file-" .. string.rep("f", 40) .. ".txt"   -- > 100
  local longer = seg .. "/" .. seg .. "/" .. seg .. "/" .. seg .. "/" .. string.rep("g", 70) -- > 255
  t.ok(#long > 100 and #long < 255 and #longer > 255)
  write(dir .. "/" .. long, "long\n")
  write(dir .. "/" .. longer, "longer\n", tonumber("700", 8))
  local target = longer
  sh("ln -s " .. q(target) .. " " .. q(dir .. "/ln"))
  local names, out = pack_and_extract(dir)
  t.ok(has(names, long), "long name listed")
  t.ok(has(names, longer), "longer name listed")
  t.ok(has(names, seg .. "/" .. seg .. "/" .. seg .. "/"), "long directory name listed")
  t.eq(read(out .. "/" .. long), "long\n")
  t.eq(read(out .. "/" .. longer), "longer\n")
  t.eq(mode_of(out .. "/" .. longer), "700")
  t.eq(capture("readlink " .. q(out .. "/ln")), target .. "\n")
  t.eq(read(out .. "/ln"), "longer\n", "link resolves after extraction")
end)

t.test("pack: .dockerignore applies; Dockerfile and .dockerignore always included", function()
  local dir = scratch()
  write(dir .. "/.dockerignore", "# ignore everything but the app\r\n*\r\n!app\r\napp/*.log\r\n")
  write(dir .. "/Dockerfile", "FROM scratch\n")
  write(dir .. "/secret.env", "X=1\n")
  write(dir .. "/app/main.lua", "print(1)\n")
  write(dir .. "/app/debug.log", "noise\n")
  write(dir .. "/node_modules/x/index.js", "x\n")
  local names, out = pack_and_extract(dir)
  t.same(names, { ".dockerignore", "Dockerfile", "app/", "app/main.lua" })
  t.eq(read(out .. "/Dockerfile"), "FROM scratch\n")
  t.eq(read(out .. "/secret.env"), nil)
end)

t.test("pack: excluded dir walked only for an exception inside it", function()
  local dir = scratch()
  write(dir .. "/docs/README.md", "read me\n")
  write(dir .. "/docs/other.md", "other\n")
  write(dir .. "/docs/deep/keep.txt", "keep\n")
  write(dir .. "/docs/deep/drop.txt", "drop\n")
  write(dir .. "/docs/nothing/x.txt", "x\n")
  write(dir .. "/src/a.c", "int a;\n")
  local names, out = pack_and_extract(dir, { ignore = { "docs", "!docs/README.md", "!docs/deep/keep.txt" } })
  t.same(names, { "docs/", "docs/README.md", "docs/deep/", "docs/deep/keep.txt", "src/", "src/a.c" })
  t.eq(read(out .. "/docs/README.md"), "read me\n")
  names = pack_and_extract(dir, { ignore = { "docs", "!src/a.c" } })
  t.same(names, { "src/", "src/a.c" }, "no exception beneath docs")
  names = pack_and_extract(dir, { ignore = { "docs/**" } })
  t.same(names, { "docs/", "src/", "src/a.c" }, "docs/** keeps the directory")
  names = pack_and_extract(dir, { ignore = { "**/*.md", "src" } })
  t.same(names, { "docs/", "docs/deep/", "docs/deep/drop.txt", "docs/deep/keep.txt",
    "docs/nothing/", "docs/nothing/x.txt" })
  names = pack_and_extract(dir, { ignore = { "docs", "!**/keep.txt" } })
  t.same(names, { "docs/", "docs/deep/", "docs/deep/keep.txt", "src/", "src/a.c" }, "** exception")
end)

t.test("pack: opts.ignore replaces .dockerignore; opts.dockerfile kept", function()
  local dir = scratch()
  write(dir .. "/.dockerignore", "keep.txt\n")
  write(dir .. "/keep.txt", "k\n")
  write(dir .. "/build/Dockerfile.dev", "FROM x\n")
  write(dir .. "/build/other", "o\n")
  local names = pack_and_extract(dir, { ignore = { "build", ".dockerignore" },
    dockerfile = "./build/Dockerfile.dev" })
  t.same(names, { ".dockerignore", "build/", "build/Dockerfile.dev", "keep.txt" })
end)

t.test("pack: opts.extra adds and replaces root files", function()
  local dir = scratch()
  write(dir .. "/Dockerfile", "FROM old\n", tonumber("600", 8))
  write(dir .. "/app.txt", "app\n")
  local names, out = pack_and_extract(dir, { extra = { Dockerfile = "FROM new\n", ["gen.txt"] = "gen\n" } })
  t.same(names, { "Dockerfile", "gen.txt", "app.txt" })
  t.eq(read(out .. "/Dockerfile"), "FROM new\n")
  t.eq(mode_of(out .. "/Dockerfile"), "644")
  t.eq(read(out .. "/gen.txt"), "gen\n")
  names = pack_and_extract(dir, { extra = { ["x.bin"] = "" }, ignore = { "*" } })
  t.same(names, { "x.bin", "Dockerfile" }, "extra ignores the patterns")
end)

t.test("pack: an extra given as { data, mode } keeps its mode (the holder's executable)", function()
  local dir = scratch()
  local _, out = pack_and_extract(dir, { extra = { run = { data = "#!/bin/sh\n", mode = tonumber("755", 8) },
                                                   plain = { data = "x" } } })
  t.eq(read(out .. "/run"), "#!/bin/sh\n")
  t.eq(mode_of(out .. "/run"), "755")
  t.eq(mode_of(out .. "/plain"), "644", "no mode: 0644 as for a string")
  t.ok(not pcall(tar.pack, dir, { extra = { x = { mode = 493 } } }), "a table needs data")
  local only = tar.pack(false, { extra = { a = "1", b = { data = "22", mode = 493 } } })
  local file = scratch_file()
  write(file, only)
  t.eq(capture("tar -tf " .. q(file)), "a\nb\n", "false: the extras alone, no directory")
  t.ok(not pcall(tar.pack, dir, { extra = { x = { data = "", mode = -1 } } }), "a mode out of range")
end)

t.test("pack: trouble returns nil and a message naming the path", function()
  local dir = scratch()
  local s, err = tar.pack(dir .. "/missing")
  t.eq(s, nil)
  t.match(err, "missing: No such file or directory", "missing dir")
  write(dir .. "/plain", "x")
  s, err = tar.pack(dir .. "/plain")
  t.eq(s, nil)
  t.match(err, "plain: Not a directory")
  sh("mkdir -p " .. q(dir .. "/d/.dockerignore"))
  s, err = tar.pack(dir .. "/d")
  t.eq(s, nil, "a .dockerignore that is not a file")
  t.match(err, "d/.dockerignore: ")
end)

t.test("pack: an empty directory is two zero blocks", function()
  local dir = scratch()
  t.eq(tar.pack(dir), string.rep("\0", 1024))
end)

os.exit(t.run())
