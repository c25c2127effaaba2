-- expect: field 'restart': must be a policy .*got table
return {
  components = {
    web = { image = "nginx", restart = { always = true } },
  },
}
