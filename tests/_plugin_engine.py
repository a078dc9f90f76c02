"""A 'third-party' engine module for the entry-point test (tests/test_engines_base.py)."""

from conftest import KickEcho


class PluginEcho(KickEcho):
    """KickEcho under another name, as a plug-in would declare it."""

    name = "_plugin_echo"
