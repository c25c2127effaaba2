#!/usr/bin/env mw run
-- A stack file saved with a byte order mark and a "#!" line, as some editors and users do.
return {
  name = "bom",
  components = { web = { image = "nginx" } },
}
