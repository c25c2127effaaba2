-- expect: bad mode "rx"
return {
  components = {
    web = { image = "nginx", volumes = { "data:/data:rx" } },
  },
}
