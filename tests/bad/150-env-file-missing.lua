-- expect: :4: component 'web': field 'env_file%[1%]': env file "nope%.env" not found %(relative to the stack file%)
return {
  components = {
    web = { image = "nginx", env_file = { "nope.env" } },
  },
}
