-- expect: fixed%-port%.lua:6: component 'web': field 'standby': a standby cannot have a fixed host port: ports%[1%] publishes host port 8080
-- A standby beside a fixed host port: the active container holds the port.
return {
  components = {
    web = { image = "nginx", ports = { "127.0.0.1:8080:80" },
      standby = true },
  },
}
