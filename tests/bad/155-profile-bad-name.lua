-- expect: :4: component 'web': field 'profiles%[1%]': bad profile name "has space"
return {
  components = {
    web = { image = "app", profiles = { "has space" } },
  },
}
