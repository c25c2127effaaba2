-- expect: 100%-duplicate%-component%.lua:6: component 'web' is defined twice %(lines 4 and 6%)
return {
  components = {
    web = { image = "nginx" },
    db = { image = "postgres" },
    web = { image = "httpd" },
  },
}
