-- expect: component 'web': unknown field 'heart\xffbeat'
return {
  components = {
    web = { image = "nginx", ["heart\xffbeat"] = true },
  },
}
