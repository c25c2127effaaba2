-- expect: anonymous volume "/data"
return {
  components = {
    web = { image = "nginx", volumes = { "/data" } },
  },
}
