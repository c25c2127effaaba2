-- mw.text, the one escaper of user bytes (stack messages, mw import's Lua strings,
-- duration messages), and fs.cwd, the one way mw finds its working directory.
local t = require "t"
local text = require "mw.text"
local duration = require "mw.duration"
local fs = require "mw.fs"

t.test("printable keeps UTF-8 and backslashes, escapes control and stray bytes", function()
  t.eq(text.printable("caf\xc3\xa9 \xe2\x82\xac a\\b"), "caf\xc3\xa9 \xe2\x82\xac a\\b")
  t.eq(text.printable("a\nb\0c\127"), "a\\x0ab\\x00c\\x7f")
  t.eq(text.printable("\xc3 \x80 \xff \xed\xa0\x80"), "\\xc3 \\x80 \\xff \\xed\\xa0\\x80")   -- a surrogate too
end)

t.test("lua_quote gives a literal Lua reads back as the same bytes", function()
  for _, s in ipairs { "", "plain", 'q"uote', "back\\slash", "nl\ncr\rtab\t", "\0\1\127\255",
                       "\xf0\x9f\x98\x80 ok", "\xc0\xaf", ("x"):rep(1000) .. "\xe2\x82" } do
    local q = text.lua_quote(s)
    t.ok(not q:find("[\0-\8\11-\31\127]"), "no raw control bytes in " .. q)
    t.eq(load("return " .. q)(), s)
  end
  t.eq(text.lua_quote('a"\n\xc3\xa9'), '"a\\"\\n\xc3\xa9"')
end)

t.test("a long value of valid UTF-8 is kept whole", function()
  local s = ("\xc3\xa9"):rep(4 * 1024 * 1024)
  t.eq(#text.lua_quote(s), #s + 2)
end)

t.test("cut backs off to a character boundary", function()
  t.eq(text.cut("abcdef", 10), "abcdef")
  t.eq(text.cut("ab\xc3\xa9cd", 3), "ab...")
end)

t.test("duration messages quote values with the same escaper", function()
  local _, err = duration.parse('1x"\n')
  t.match(err, 'bad duration "1x\\x22\\x0a"', err)
  _, err = duration.parse(("9"):rep(50) .. "q")
  t.match(err, '%.%.%."', err)
end)

t.test("fs.cwd is the process's working directory", function()
  local d = assert(fs.cwd())
  t.eq(d:sub(1, 1), "/")
  t.eq(fs.realpath("."), d)
end)

os.exit(t.run())
