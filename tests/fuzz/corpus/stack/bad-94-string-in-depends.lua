-- expect: field 'depends_on%[1%]': must be a component name, got number
return {
  components = {
    web = { image = "nginx", depends_on = { 1 } },
  },
}
