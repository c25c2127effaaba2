-- expect: :4: component 'api': field 'volumes%[1%].external': only a named volume can be external
return {
  components = {
    api = { image = "app", volumes = { { source = "/tmp", target = "/d", external = true } } },
  },
}
