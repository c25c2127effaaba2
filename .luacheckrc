-- luacheck (Debian's lua-check), run by `make test` over the Lua sources and tests.
std = "lua54"
max_line_length = 150
exclude_files = { "tests/bad/*", "tests/fuzz/**", "build/**" }
self = false -- a method need not use its receiver
-- shell commands and long assertions in test stacks read better whole
files["tests/engine/test_real.lua"] = { max_line_length = false }
files["tests/bench/footprint.lua"] = { max_line_length = false }
-- stack files may read the sandbox's mw table (mw.env, mw.interpolate)
files["tests/good/**"] = { read_globals = { "mw" } }
files["examples/**"] = { read_globals = { "mw" } }
