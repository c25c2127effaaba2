-- expect: backoff%.linear: field 'max' must be >= 'initial'
local backoff = require "mw.backoff"
local b = backoff.linear { initial = "10s", max = "1s" }
