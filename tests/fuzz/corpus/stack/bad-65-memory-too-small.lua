-- expect: field 'memory': must be at least 6m
return {
  components = {
    web = { image = "nginx", memory = "1m" },
  },
}
