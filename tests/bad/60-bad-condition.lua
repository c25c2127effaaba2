-- expect: field 'depends_on%.db': condition must be "started", "healthy" or "completed", got "service_healthy"
return {
  components = {
    db = { image = "postgres", heartbeat = true },
    web = { image = "nginx", depends_on = { db = "service_healthy" } },
  },
}
