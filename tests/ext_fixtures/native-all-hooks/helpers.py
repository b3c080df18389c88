"""A helper module imported relatively (the extension is its own package)."""
SUFFIX_KEY = "Test suffix"
