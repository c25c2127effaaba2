-- expect: 116%-pattern%-backtrack%.lua: stack file ran too long %(budget exceeded%)
-- Exponential backtracking in one string.find: bounded by mw's step-counted matcher.
local _ = ("a"):rep(2000):find(("a*"):rep(12) .. "b")
return { components = { web = { image = "busybox" } } }
