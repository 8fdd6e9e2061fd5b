"""The ``[data_stores.<name>]`` tables of a development node's ``node.toml``.

::

    set_data_stores(layout.organization("dic-1.test").config,
                    {"default": DataStoreSettings("https://127.0.0.1:8444/fhir", auth="bearer", bearer_token=Secret("t"))})

The tables go at the end of the file below one marker comment and are replaced as a whole by the
next call (``{}`` removes them), so a network whose stores move to other ports can be pointed at
them again without ``init --force``.  Secrets are written into the file, which is then readable by
its owner only; paths are written absolute.  The result must load with ``load_settings`` or
nothing is changed.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import fields
from pathlib import Path

from dsf_core.network import _toml
from dsf_core.network.spec import NetworkError
from dsf_core.settings import DataStoreSettings, Secret, SettingsError, load_settings

MARKER = "# Data stores, written by dsf_core.network.set_data_stores: replaced as a whole, do not edit below."
_NAME = re.compile(r"^[A-Za-z0-9_-]+$")


def data_store_tables(stores: Mapping[str, DataStoreSettings]) -> list[str]:
    """One TOML table per store, keys in the order of :class:`DataStoreSettings`, unset keys left out."""
    tables = []
    for name, store in stores.items():
        if not _NAME.match(name):
            raise NetworkError(f"data store name {name!r}: letters, digits, '_' and '-' only")
        if not isinstance(store, DataStoreSettings):
            raise NetworkError(f"data store {name!r}: expected DataStoreSettings, got {type(store).__name__}")
        values: dict[str, _toml.Value | None] = {}
        for f in fields(DataStoreSettings):
            value = getattr(store, f.name)
            values[f.name] = Path(value).resolve() if isinstance(value, Path) else value
        tables.append(_toml.table(f"[data_stores.{name}]", values))
    return tables


def set_data_stores(config: Path, stores: Mapping[str, DataStoreSettings]) -> None:
    """Replace the data-store tables of the node config *config* with *stores*."""
    try:
        text = config.read_text()
    except OSError as exc:
        raise NetworkError(f"{config}: cannot read: {exc.strerror or exc}") from None
    head, marker, _ = text.partition(MARKER)
    if not marker and re.search(r"^\s*\[\s*data_stores\b", text, re.MULTILINE):
        raise NetworkError(f"{config}: has [data_stores] tables written by hand; remove them to manage stores here")
    new = head.rstrip("\n") + "\n"
    if stores:
        new += "\n" + MARKER + "\n" + "\n".join(data_store_tables(stores))
    secret = any(isinstance(getattr(s, f.name), Secret) for s in stores.values() for f in fields(DataStoreSettings))
    try:
        if secret:  # before the secrets are in it
            config.chmod(0o600)
        config.write_text(new)
        load_settings(config, environ={})
    except SettingsError as exc:
        config.write_text(text)
        raise NetworkError(f"{config}: the data stores make an invalid config: {exc}") from None
    except OSError as exc:
        raise NetworkError(f"{config}: cannot write: {exc.strerror or exc}") from None


__all__ = ["MARKER", "data_store_tables", "set_data_stores"]
