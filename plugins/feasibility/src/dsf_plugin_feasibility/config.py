"""The feasibility plugin's settings: the node config's ``[plugins.feasibility]`` table.

::

    [plugins.feasibility]
    request_task_timeout = "PT5M"     # HRP: request Tasks older than this are rejected as stale
    result_timeout = "PT5M"           # HRP: how long to wait for each DIC's answer
    mapping_file = "my-mapping.json"  # DIC: extra term-code mappings for structured queries

    [plugins.feasibility.stores.default]          # DIC: how to evaluate on data store "default"
    strategy = "structured-query"                 # or "cql" (a store with $evaluate-measure)
    request_timeout = "PT5M"

    [plugins.feasibility.networks."medizininformatik-initiative.de"]
    obfuscate = true                              # Laplace noise, rounded to tens
    rate_limit = { count = 999, interval = "PT1H" }
    stores = ["default"]

Store names are those of the node's ``[data_stores.<name>]`` tables (base URL and auth live
there).  A network is the parent organisation whose HRP sends the query.  Networks not
listed get the defaults: obfuscation on, 999 requests per hour, every configured data store.
Everything is checked when the node starts; errors name the file and the key.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from dsf_core.api import PluginSettings, SettingsError

__all__ = ["FeasibilitySettings", "NetworkSettings", "RateLimitSettings", "StoreSettings", "parse_duration"]

STRATEGIES = {"structured-query": "structured-query", "ccdl": "structured-query", "cql": "cql"}

_DURATION = re.compile(
    r"^P(?:(?P<days>\d+)D)?(?:T(?:(?P<hours>\d+)H)?(?:(?P<minutes>\d+)M)?(?:(?P<seconds>\d+(?:\.\d+)?)S)?)?$"
)


def parse_duration(text: str) -> timedelta:
    """``PT5M``, ``P1D``, ``PT1H30M``, ``PT0.5S`` → timedelta; anything else → ValueError."""
    match = _DURATION.match(text.strip().upper()) if isinstance(text, str) else None
    if match is None or text.strip().upper() in ("P", "PT"):
        raise ValueError(f"{text!r} is not an ISO-8601 duration like PT5M, PT1H or P1D")
    parts = {k: float(v) for k, v in match.groupdict().items() if v}
    return timedelta(**parts)


@dataclass(frozen=True)
class RateLimitSettings:
    count: int = 999
    interval: timedelta = timedelta(hours=1)


@dataclass(frozen=True)
class NetworkSettings:
    parent: str
    obfuscate: bool = True
    rate_limit: RateLimitSettings = field(default_factory=RateLimitSettings)
    #: Data store names; empty = every store of the node.
    stores: tuple[str, ...] = ()


@dataclass(frozen=True)
class StoreSettings:
    name: str
    strategy: str = "structured-query"
    request_timeout: timedelta = timedelta(minutes=5)


@dataclass(frozen=True)
class FeasibilitySettings:
    request_task_timeout: timedelta = timedelta(minutes=5)
    result_timeout: timedelta = timedelta(minutes=5)
    mapping_file: str | None = None
    stores: Mapping[str, StoreSettings] = field(default_factory=dict)
    networks: Mapping[str, NetworkSettings] = field(default_factory=dict)

    def network(self, parent: str) -> NetworkSettings:
        return self.networks.get(parent) or NetworkSettings(parent)

    def store(self, name: str) -> StoreSettings:
        return self.stores.get(name) or StoreSettings(name)

    @classmethod
    def parse(cls, settings: PluginSettings) -> FeasibilitySettings:
        _known(settings, {"request_task_timeout", "result_timeout", "mapping_file", "stores", "networks"})
        values: dict[str, Any] = {}
        for key in ("request_task_timeout", "result_timeout"):
            if key in settings.table:
                values[key] = _positive_duration(settings, key)
        if "mapping_file" in settings.table:
            path = settings.path("mapping_file")
            if path is None or not path.is_file():
                raise SettingsError(f"{settings.where('mapping_file')}: no such file {path}")
            values["mapping_file"] = str(path)
        stores_table = settings.section("stores")
        stores = {}
        for name in stores_table.table:
            store = stores_table.section(name)
            _known(store, {"strategy", "request_timeout"})
            strategy = str(store.get("strategy", "structured-query")).lower()
            if strategy not in STRATEGIES:
                raise SettingsError(f"{store.where('strategy')}: {strategy!r} is not one of structured-query, ccdl, cql")
            timeout = _positive_duration(store, "request_timeout") if "request_timeout" in store.table else timedelta(minutes=5)
            stores[name] = StoreSettings(name, STRATEGIES[strategy], timeout)
        networks_table = settings.section("networks")
        networks = {}
        for parent in networks_table.table:
            network = networks_table.section(parent)
            _known(network, {"obfuscate", "rate_limit", "stores"})
            obfuscate = network.get("obfuscate", True)
            if not isinstance(obfuscate, bool):
                raise SettingsError(f"{network.where('obfuscate')} must be true or false")
            limit = network.section("rate_limit")
            _known(limit, {"count", "interval"})
            count = limit.get("count", 999)
            if not isinstance(count, int) or isinstance(count, bool) or count < 0:
                raise SettingsError(f"{limit.where('count')} must be a whole number ≥ 0 (0 refuses every request)")
            interval = _positive_duration(limit, "interval") if "interval" in limit.table else timedelta(hours=1)
            names = network.get("stores", [])
            if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
                raise SettingsError(f"{network.where('stores')} must be a list of data store names")
            networks[parent] = NetworkSettings(parent, obfuscate, RateLimitSettings(count, interval), tuple(names))
        return cls(stores=stores, networks=networks, **values)


def _known(settings: PluginSettings, keys: set[str]) -> None:
    for key in settings.table:
        if key not in keys:
            raise SettingsError(f"{settings.where(key)}: unknown setting (known: {', '.join(sorted(keys))})")


def _positive_duration(settings: PluginSettings, key: str) -> timedelta:
    try:
        value = parse_duration(settings.get(key))
    except ValueError as exc:
        raise SettingsError(f"{settings.where(key)}: {exc}") from None
    if value <= timedelta(0):
        raise SettingsError(f"{settings.where(key)} must be longer than zero")
    return value
