-- expect: field 'networks%[2%]': network "front" is listed twice
return {
  components = {
    web = { image = "nginx", networks = { "front", "front" } },
  },
}
