-- expect: has network_mode "none" and an http heartbeat mw cannot reach
return {
  components = {
    app = { image = "busybox", network_mode = "none", heartbeat = true },
  },
}
