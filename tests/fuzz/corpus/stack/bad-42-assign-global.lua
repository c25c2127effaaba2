-- expect: 42%-assign%-global%.lua:3: assignment to undeclared global 'web'
local policy = require "mw.policy"
web = { image = "nginx" }
return { components = { web = web } }
