from modules import sd_hijack  # noqa: F401  (not imitated: the extension needs a native port)
