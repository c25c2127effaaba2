-- expect: 122%-stdlib%-mutation%.lua:%d+: module 'mw%.policy%.actions' is read%-only %(cannot set 'restart'%)
-- The stdlib is shared by every load: a nested table of it is read-only too.
local policy = require "mw.policy"
policy.actions.restart = nil
return { components = { web = { image = "busybox" } } }
