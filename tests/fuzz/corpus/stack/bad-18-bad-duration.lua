-- expect: 18%-bad%-duration%.lua:7: component 'web': field 'heartbeat%.interval': bad duration "5 sec" %(use e%.g%. "500ms", "2s", "1m30s"%)
return {
  components = {
    web = {
      image = "nginx",
      heartbeat = {
        interval = "5 sec",
      },
    },
  },
}
