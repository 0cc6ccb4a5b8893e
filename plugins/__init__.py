"""Bundled plugins, installed as ``helpdesk_plugins`` and found through the ``helpdesk``
entry-point group like any third-party plugin. Each uses only the public plugin API:
``helpdesk.hookimpl``, ``helpdesk.access``, ``helpdesk.plugin_settings``, the records in
``helpdesk.records`` and the domain functions in ``helpdesk.incidents``."""
