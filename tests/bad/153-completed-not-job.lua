-- expect: :5: component 'web': field 'depends_on': 'migrate' is not a job, so it never completes
return {
  components = {
    migrate = { image = "app" },
    web = { image = "app", depends_on = { migrate = "completed" } },
  },
}
