-- expect: component 'web': field 'depends_on': 'db' has no heartbeat
return {
  components = {
    db = { image = "postgres" },
    web = { image = "nginx", depends_on = { db = "healthy" } },
  },
}
