-- expect: 12%-component%-string%.lua:5: component 'web': must be a table of fields
return {
  components = {
    db = { image = "postgres" },
    web = "nginx",
  },
}
