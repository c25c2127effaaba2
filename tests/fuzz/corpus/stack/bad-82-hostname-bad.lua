-- expect: field 'hostname': bad hostname "%-bad%-"
return {
  components = {
    web = { image = "nginx", hostname = "-bad-" },
  },
}
