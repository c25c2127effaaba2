-- expect: 55%-module%-readonly%.lua:3: module 'mw%.policy' is read%-only
local policy = require "mw.policy"
policy.default = 1
