-- expect: component 'web': field 'depends_on': unknown component 'dbb' %(did you mean 'db'%?%)
return {
  components = {
    db = { image = "postgres" },
    web = { image = "nginx", depends_on = { "dbb" } },
  },
}
