-- expect: field 'heartbeat': give one of 'tcp' and 'exec', not both
return {
  components = {
    db = { image = "redis", heartbeat = { tcp = 6379, exec = { "redis-cli", "ping" } } },
  },
}
