-- expect: 26%-bad%-stack%-name%.lua:3: field 'name': bad stack name "My Stack"
return {
  name = "My Stack",
  components = { web = { image = "nginx" } },
}
