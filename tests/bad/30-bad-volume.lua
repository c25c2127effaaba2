-- expect: field 'volumes%[1%]': bad volume "data"
return {
  components = {
    web = { image = "nginx", volumes = { "data" } },
  },
}
