-- expect: 02%-runtime%-error%.lua:3: boom$
local x = 1
error("boom")
return {}
