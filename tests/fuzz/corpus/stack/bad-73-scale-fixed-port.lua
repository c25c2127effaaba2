-- expect: field 'ports%[1%]': host port 8080 is fixed, so 2 instances
return {
  components = {
    web = { image = "nginx", scale = 2, ports = { "8080:80" } },
  },
}
