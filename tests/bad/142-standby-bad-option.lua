-- expect: field 'standby': unknown field 'keep'
-- A standby's options are checked like any table.
return {
  components = {
    web = { image = "nginx", standby = { keep = true } },
  },
}
