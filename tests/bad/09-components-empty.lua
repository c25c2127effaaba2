-- expect: 09%-components%-empty%.lua:3: field 'components': no components defined
return {
  components = {},
}
