-- expect: requires itself
local h = require "helpers_cycle"
return {}
