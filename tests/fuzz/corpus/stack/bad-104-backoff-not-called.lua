-- expect: policy%.always: field 'backoff' must be a backoff from mw%.backoff .*got function
local policy = require "mw.policy"
local backoff = require "mw.backoff"
local p = policy.always { backoff = backoff.constant }
