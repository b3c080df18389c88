WHO = "collide-a"
