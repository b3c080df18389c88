"""Compatibility layers for other UIs' extension APIs (opt-in, loaded only when such an extension is)."""
