"""Scaffolds for third-party code: ``dsf plugin new`` writes a process plugin distribution from here.

:func:`plugin_names` checks a plugin name (and domain, package) and derives every name the files
use; :func:`render_plugin` fills the templates in ``templates/plugin``; :func:`create_plugin`
writes them to a new directory. A problem the user can fix raises :class:`ScaffoldError`.
"""

from dsf_core.scaffold.plugin import PluginNames, ScaffoldError, create_plugin, plugin_names, render_plugin

__all__ = ["PluginNames", "ScaffoldError", "create_plugin", "plugin_names", "render_plugin"]
