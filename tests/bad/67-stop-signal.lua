-- expect: field 'stop_signal': unknown signal "SIGFOO"
return {
  components = {
    web = { image = "nginx", stop_signal = "SIGFOO" },
  },
}
