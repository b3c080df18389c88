"""Hardening: what one request may do to the app, decided in one place (docs/security.md).

- `policy.py`    who may call (Host names, Origins, accounts) and how big a request may be, from flags
- `gate.py`      the ASGI middleware in front of everything Gradio and the API serve
- `throttle.py`  slows repeated failed logins per client
- `budget.py`    how much work one generation request may ask for
- `paths.py`     where settings changed through the API may make the app write

No Gradio here; `webui/ui/guarded_app.py` puts the gate in front of Gradio's app.
"""
