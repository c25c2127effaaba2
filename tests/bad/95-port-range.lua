-- expect: port ranges are not supported
return {
  components = {
    web = { image = "nginx", ports = { "8000-8010:8000-8010" } },
  },
}
