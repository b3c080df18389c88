def register(api):
    api.setting("broken_register_half", 1, "Half-registered setting")  # must not survive the failure
    raise RuntimeError("register failed on purpose")
