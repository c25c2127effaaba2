-- expect: field 'oom_score_adj'
return {
  components = {
    app = { image = "busybox", oom_score_adj = 5000 },
  },
}
