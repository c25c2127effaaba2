-- expect: 156%-interpolate%-required%.lua:4: mw%.interpolate: required variable MW_TEST_UNSET_VAR is missing a value: give it
return {
  components = {
    web = { image = mw.interpolate("app:${MW_TEST_UNSET_VAR:?give it}") },
  },
}
