-- expect: field 'heartbeat%.port': must be between 1 and 65535, got 0
return {
  components = {
    web = { image = "nginx", heartbeat = { port = 0 } },
  },
}
