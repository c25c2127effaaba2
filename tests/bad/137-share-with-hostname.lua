-- expect: has network_mode "service:db" and 'hostname': the engine refuses both
return {
  components = {
    db = { image = "busybox" },
    app = { image = "busybox", network_mode = "service:db", hostname = "app" },
  },
}
