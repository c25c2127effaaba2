-- expect: 103%-error%-in%-loaded%-string%.lua: %[string "error%('inner'%)"%]:1: inner$
local f = load("error('inner')")
f()
