-- expect: :4: component 'api': field 'networks.back': a static ipv4_address needs the network declared with a subnet
return {
  components = {
    api = { image = "app", networks = { back = { ipv4_address = "172.28.0.5" } } },
  },
}
