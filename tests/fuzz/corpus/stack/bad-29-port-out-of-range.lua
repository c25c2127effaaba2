-- expect: field 'ports%[1%]': bad port "70000:80"
return {
  components = {
    web = { image = "nginx", ports = { "70000:80" } },
  },
}
