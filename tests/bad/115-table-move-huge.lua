-- expect: 115%-table%-move%-huge%.lua: stack file ran too long %(budget exceeded%)
-- One C call over 2^63 elements: the count hook never fires inside it, so mw moves in slices.
table.move({}, 1, math.maxinteger - 1, 2)
return { components = { web = { image = "busybox" } } }
