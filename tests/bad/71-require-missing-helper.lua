-- expect: 71%-require%-missing%-helper%.lua:2: module 'nope' not found
local h = require "nope"
