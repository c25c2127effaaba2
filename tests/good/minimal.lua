-- The smallest valid stack: one component from an image, every other field defaulted.
return {
  components = {
    web = { image = "nginx:1.25" },
  },
}
