-- expect: 08%-components%-missing%.lua: missing field 'components'
return { name = "demo" }
