WHO = "collide-b"
