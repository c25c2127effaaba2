-- expect: 05%-returns%-nothing%.lua: .*returned nothing
local components = { web = { image = "nginx" } }
