-- expect: 38%-io%-open%.lua:2: 'io' is not available in stack files
local f = io.open("/etc/passwd")
return {}
