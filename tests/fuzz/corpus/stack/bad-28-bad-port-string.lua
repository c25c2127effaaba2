-- expect: field 'ports%[2%]': bad port "80a:80"
return {
  components = {
    web = { image = "nginx", ports = { "8080:80", "80a:80" } },
  },
}
