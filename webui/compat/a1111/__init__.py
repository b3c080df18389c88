"""The opt-in A1111 extension shim: the only place that imitates ``modules.*``.

Tiers (docs/extensions.md): 0 assets (localizations, JS, CSS: no Python involved), 1 callbacks and
``shared.opts`` / ``OptionInfo`` / ``cmd_opts`` as views over our own objects, 2 AlwaysOn
scripts whose ``process()`` edits prompts and seeds through a ``p`` stand-in. Anything else is
refused at load with "needs a native port" and the reason.
"""
from __future__ import annotations


def bridge_for(host):
    """Create the Bridge for one ExtensionHost and make it the one the ``modules.*`` views read."""
    from webui.compat.a1111.bridge import Bridge

    return Bridge(host)
