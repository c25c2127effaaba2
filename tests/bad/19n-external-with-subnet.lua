-- expect: :3: field 'networks.corp.subnet': an external network is made by someone else; mw sets nothing on it
return {
  networks = { corp = { external = true, subnet = "10.1.0.0/16" } },
  components = { api = { image = "app", networks = { "corp" } } },
}
