-- expect: standby%-volume%.lua:7: component 'db': field 'standby': a standby would share the named volume 'data' %(volumes%[1%]%) with the active container
-- A standby would mount the active container's named volume: two writers, unless marked shared.
return {
  components = {
    db = { image = "redis",
      volumes = { "data:/data" },
      standby = { keep_failed = true } },
  },
}
