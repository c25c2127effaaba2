-- expect: component 'b': field 'ports%[1%]': host port 8080/tcp is already published by component 'a'
return {
  components = {
    a = { image = "x", ports = { "8080:80" } },
    b = { image = "x", ports = { "127.0.0.1:8080:8080" } },
  },
}
