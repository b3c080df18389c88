import this_module_does_not_exist_anywhere  # noqa: F401  (the load table must show this)


def register(api):
    pass
