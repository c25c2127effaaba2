-- expect: field 'heartbeat%.timeout': bad duration
return {
  components = {
    web = { image = "nginx", heartbeat = { timeout = 0/0 } },
  },
}
