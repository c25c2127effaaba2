-- expect: module 'mw%.docker' is not available to stack files
local docker = require "mw.docker"
return {}
