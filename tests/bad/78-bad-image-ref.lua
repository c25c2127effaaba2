-- expect: field 'image': bad image reference "Nginx:latest": the repository name must be lowercase
return {
  components = {
    web = { image = "Nginx:latest" },
  },
}
