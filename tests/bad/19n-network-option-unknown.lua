-- expect: :4: component 'api': field 'networks.back': unknown field 'ipv6_address'
return {
  components = {
    api = { image = "app", networks = { back = { ipv6_address = "::1" } } },
  },
}
