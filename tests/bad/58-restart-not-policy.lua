-- expect: field 'restart': must be a policy
return {
  components = {
    web = { image = "nginx", restart = "sometimes" },
  },
}
