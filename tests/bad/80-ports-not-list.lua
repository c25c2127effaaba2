-- expect: field 'ports': must be a list .*but has a field 'web'
return {
  components = {
    web = { image = "nginx", ports = { web = "80" } },
  },
}
