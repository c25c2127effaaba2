-- expect: :5: component 'web': field 'depends_on': 'migrate' is a job: it runs to completion and is never healthy
return {
  components = {
    migrate = { image = "app", job = true, heartbeat = true },
    web = { image = "app", depends_on = { migrate = "healthy" } },
  },
}
