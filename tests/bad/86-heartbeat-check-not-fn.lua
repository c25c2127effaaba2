-- expect: field 'heartbeat%.check': must be a function
return {
  components = {
    web = { image = "nginx", heartbeat = { check = "yes" } },
  },
}
