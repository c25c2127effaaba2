-- expect: field 'stop_grace': bad duration "%-1s"
return {
  components = {
    web = { image = "nginx", stop_grace = "-1s" },
  },
}
