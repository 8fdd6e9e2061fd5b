"""[plugins.data_transfer] first, then the Java environment names, then the defaults."""

from __future__ import annotations

from pathlib import Path

import pytest
from dsf_plugin_data_transfer import PLUGIN
from dsf_plugin_data_transfer.keys import PRIVATE_KEY
from dsf_plugin_data_transfer.status import DIC_STORE, RECEIPT_TIMEOUT, WORK_DIRECTORY, config

from dsf_core.api import PluginSettings, SettingsError


class Api:
    """What ``config`` uses of the plugin API: the plugin's table and the node's environment."""

    def __init__(self, table: dict[str, object], environ: dict[str, str], base: Path) -> None:
        self.table = PluginSettings("data_transfer", table, "node.toml", base)
        self.environ = environ

    def plugin_settings(self, name: str) -> PluginSettings:
        assert name == "data_transfer"
        return self.table

    def config(self, name: str, default: str | None = None) -> str | None:
        return self.environ.get(name, default)


def test_the_table_wins_over_the_environment_and_paths_are_relative_to_the_config(tmp_path: Path) -> None:
    api = Api({"receipt_timeout": "PT1M", "dms_private_key": "keys/dms.key", "work_directory": "/srv/work"},
              {RECEIPT_TIMEOUT: "PT9M", DIC_STORE: "kds"}, tmp_path)
    assert config(api, RECEIPT_TIMEOUT) == "PT1M"  # type: ignore[arg-type]
    assert config(api, PRIVATE_KEY) == str(tmp_path / "keys" / "dms.key")  # type: ignore[arg-type]
    assert config(api, WORK_DIRECTORY) == "/srv/work"  # type: ignore[arg-type]
    assert config(api, DIC_STORE) == "kds"  # type: ignore[arg-type]  # from the environment


def test_defaults_inline_pem_and_key_files(tmp_path: Path) -> None:
    pem = "-----BEGIN PRIVATE KEY-----\nabc\n-----END PRIVATE KEY-----\n"
    assert config(Api({}, {}, tmp_path), RECEIPT_TIMEOUT) == "PT5M"  # type: ignore[arg-type]
    assert config(Api({"dms_private_key": pem}, {}, tmp_path), PRIVATE_KEY) == pem  # type: ignore[arg-type]
    api = Api({"dms_private_key_file": "dms.key"}, {}, tmp_path)
    assert config(api, PRIVATE_KEY + "_FILE") == str(tmp_path / "dms.key")  # type: ignore[arg-type]


def test_unknown_keys_stop_the_node() -> None:
    assert PLUGIN.settings_key == "data_transfer" and PLUGIN.check_settings is not None
    with pytest.raises(SettingsError, match=r"node.toml: plugins.data_transfer.reciept_timeout: unknown setting"):
        PLUGIN.check_settings(PluginSettings("data_transfer", {"reciept_timeout": "PT1M"}, "node.toml"))
