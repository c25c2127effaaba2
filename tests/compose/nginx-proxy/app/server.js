require("express")().get("/", (q, r) => r.send("hi")).listen(process.env.PORT || 3000);
