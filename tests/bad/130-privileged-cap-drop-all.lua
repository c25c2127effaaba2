-- expect: has 'privileged = true' with cap_drop "ALL"
-- A privileged container keeps every capability: dropping all of them contradicts it.
return {
  components = {
    vpn = { image = "busybox", privileged = true, cap_drop = { "ALL" } },
  },
}
