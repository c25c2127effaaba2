-- expect: field 'extra_hosts%.db': bad IP address "999%.1%.1%.1"
return {
  components = {
    web = { image = "nginx", extra_hosts = { db = "999.1.1.1" } },
  },
}
