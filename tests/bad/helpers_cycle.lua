-- Helper for 99-require-self-cycle: requires itself.
return require "helpers_cycle"
