-- expect: :4: component 'web': field 'job': must be true or false, got string
return {
  components = {
    web = { image = "app", job = "yes" },
  },
}
