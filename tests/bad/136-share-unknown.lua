-- expect: field 'network_mode': unknown component 'dbb' %(did you mean 'db'%?%)
return {
  components = {
    db = { image = "busybox" },
    app = { image = "busybox", network_mode = "service:dbb" },
  },
}
