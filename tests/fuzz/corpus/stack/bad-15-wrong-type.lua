-- expect: 15%-wrong%-type%.lua:4: component 'web': field 'image': must be a string .*got number
return {
  components = {
    web = { image = 42 },
  },
}
