-- expect: :5: component 'api': field 'networks.back': has a static ipv4_address and autoscale up to 3
return {
  networks = { back = { subnet = "172.28.0.0/16" } },
  components = {
    api = { image = "app", autoscale = { min = 1, max = 3, decide = function() return 1 end }, networks = { back = { ipv4_address = "172.28.0.5" } } },
  },
}
