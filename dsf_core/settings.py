"""Node settings: one frozen, typed object built once at start-up.

Sources, later ones win:

1. defaults below;
2. a TOML file (``dsf fhir start --config node.toml``), one table per section;
3. environment variables ``DSF_<SECTION>_<KEY>`` (e.g. ``DSF_DATABASE_URL``) and, where the
   Java DSF has an equivalent, its ``DEV_DSF_*`` name (``JAVA_ALIASES``);
4. for every setting ``X`` also ``X_FILE``: the value is read from that file (secrets, Docker
   style), trailing newline stripped.

Relative paths in the file are resolved against the file's directory.  Secrets are masked
in ``repr``.  Nothing reads ``os.environ`` after start-up.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Literal, get_args, get_origin, get_type_hints


class SettingsError(ValueError):
    """A setting is missing or malformed; the message names the source and the key."""


class Secret(str):
    """A string whose repr never shows the value."""

    def __repr__(self) -> str:
        return "Secret('**********')"


@dataclass(frozen=True)
class NodeSettings:
    #: ``dsf``: a DSF mailbox (DSF authorization rules); ``store``: a plain FHIR data store (see Data-store mode).
    mode: Literal["dsf", "store"] = "dsf"
    #: Where the SQLite databases (``fhir.sqlite``, ``engine.sqlite``) and, with SQLite, the Binary
    #: payload files (``binaries``) go.
    data_dir: Path = Path("data")


@dataclass(frozen=True)
class ServerSettings:
    #: Address the mailbox listens on.
    host: str = "127.0.0.1"
    #: Port the mailbox listens on.
    port: int = 8443
    #: External base URL of the FHIR API, e.g. https://dsf.example.org/fhir; its path is the base path.
    base_url: str = "https://localhost:8443/fhir"
    #: Search page size when the client gives no ``_count``.
    page_count: int = 20
    #: Largest ``_count`` honoured (larger values are lowered to it).
    max_page_count: int = 1000
    #: Largest FHIR request body accepted (413 above it); raw Binary uploads have their own limit.
    max_body_bytes: int = 32 * 1024 * 1024
    #: Largest raw Binary upload (413 above it); 0 = unlimited.
    max_binary_bytes: int = 0
    #: Seconds between pings on idle websocket subscriptions (keeps proxies from closing them).
    websocket_ping_seconds: float = 28.0
    #: Event loop of ``dsf fhir start`` and ``dsf node start``: uvloop (less CPU a request) or asyncio.
    event_loop: Literal["uvloop", "asyncio"] = "uvloop"


@dataclass(frozen=True)
class TlsSettings:
    #: Server certificate and key (PEM, or PKCS#12 in certificate with no private_key).
    certificate: Path | None = None
    #: Private key of the server certificate (PEM).
    private_key: Path | None = None
    #: Password of an encrypted private key.
    private_key_password: Secret | None = None
    #: CA certificates that issue acceptable client certificates (PEM bundle).
    trust_client_cas: Path | None = None
    #: Refuse the TLS handshake without a client certificate (off only behind a reverse proxy).
    require_client_certificate: bool = True


@dataclass(frozen=True)
class AuthSettings:
    #: Reverse-proxy mode: the client certificate comes from this header (PEM, URL-encoded PEM or base64 DER) ...
    client_certificate_header: str = "X-ClientCert"
    #: ... but only when the request comes from one of these addresses (empty: proxy mode off).
    trusted_proxies: tuple[str, ...] = ()
    #: Data-store mode only: none, basic, bearer or certificate.
    store_auth: Literal["none", "basic", "bearer", "certificate"] = "none"
    #: Data-store mode, basic auth: the user name.
    store_username: str | None = None
    #: Data-store mode, basic auth: the password.
    store_password: Secret | None = None
    #: Data-store mode, bearer auth: the token.
    store_bearer_token: Secret | None = None


@dataclass(frozen=True)
class OrganizationSettings:
    #: Identifier value (system http://dsf.dev/sid/organization-identifier) of the local organisation.
    identifier: str = ""
    #: The organisation's client certificate; its SHA-512 thumbprint goes into the local Organization.
    client_certificate: Path | None = None
    #: Private key of the client certificate (PEM).
    client_private_key: Path | None = None
    #: Password of an encrypted client private key.
    client_private_key_password: Secret | None = None
    #: Overrides the thumbprint computed from client_certificate.
    thumbprint: str | None = None
    #: Identifier value of the local Endpoint (default: the organisation identifier).
    endpoint_identifier: str | None = None
    #: Name of the local Organization resource.
    name: str | None = None
    #: Optional allow-list bundle (transaction, JSON or XML) loaded at every start.
    init_bundle: Path | None = None


@dataclass(frozen=True)
class DatabaseSettings:
    #: SQLAlchemy URL; sqlite (default, under data_dir) or postgresql (postgresql://user:pass@host/db).
    url: str | None = None
    #: Database password (kept out of the URL; use DSF_DATABASE_PASSWORD_FILE).
    password: Secret | None = None
    #: Directory of the Binary payload files (default with SQLite: ``binaries`` under data_dir).
    #: With PostgreSQL unset = payloads in the database; set = files, in a directory every
    #: mailbox worker of that database shares. One directory per database (see Binary payloads).
    binary_dir: Path | None = None


@dataclass(frozen=True)
class EngineSettings:
    #: Run the business process engine beside the mailbox (``dsf node start``).
    enabled: bool = True
    #: Base URL of the local mailbox the engine talks to (default: server.base_url).
    fhir_base_url: str | None = None
    #: Engine database: SQLAlchemy URL; default SQLite ``engine.sqlite`` under data_dir.
    database_url: str | None = None
    #: Engine database password (kept out of the URL).
    database_password: Secret | None = None
    #: CA certificates trusted for the server certificates of the local and remote mailboxes (default: tls.trust_client_cas).
    trust_server_cas: Path | None = None
    #: Folders with process plugins (Python packages or ``*.whl``) besides the installed ``dsf.process_plugins`` entry points.
    plugin_dirs: tuple[Path, ...] = ()
    #: Processes not deployed (``dsfdev_ping`` or ``dsfdev_ping|1.0``).
    excluded_processes: tuple[str, ...] = ()
    #: Processes deployed as retired: no new instances start, running ones finish.
    retired_processes: tuple[str, ...] = ()
    #: Seconds between periodic catch-up searches of the local mailbox (besides the websocket).
    catch_up_seconds: float = 60.0
    #: Seconds between reconnect attempts when the local mailbox is unreachable.
    reconnect_seconds: float = 5.0
    #: Attempts to deliver a Task to a peer before the send counts as failed.
    send_attempts: int = 3
    #: Seconds between those attempts.
    send_retry_seconds: float = 2.0
    #: Activities run concurrently per node.
    max_concurrent_activities: int = 64


@dataclass(frozen=True)
class DataStoreSettings:
    """One local FHIR data store the process plugins read (``[data_stores.<name>]`` in the node TOML)."""

    #: The store's FHIR base URL (required).
    base_url: str
    #: How the node authenticates: none, basic, bearer or certificate.
    auth: Literal["none", "basic", "bearer", "certificate"] = "none"
    #: auth = basic: the user name.
    username: str | None = None
    #: auth = basic: the password.
    password: Secret | None = None
    #: auth = bearer: the token.
    bearer_token: Secret | None = None
    #: auth = certificate: the client certificate (default: the organisation's).
    client_certificate: Path | None = None
    #: auth = certificate: its private key (default: the organisation's).
    client_private_key: Path | None = None
    #: CA certificates trusted for the store's server certificate (default: engine.trust_server_cas, else tls.trust_client_cas).
    trust_server_cas: Path | None = None


@dataclass(frozen=True)
class PluginSettings:
    """A plugin's own table of the node config (``[plugins.<name>]``), for the plugin to read and check.

    The table is free-form: the plugin decides its keys.  ``source`` names where it came from so
    a plugin's error can say ``node.toml: plugins.feasibility.networks.x.stores``; relative paths
    resolve against ``base_dir`` (the config file's directory).
    """

    name: str
    table: Mapping[str, Any] = field(default_factory=dict)
    source: str = "settings"
    base_dir: Path | None = None

    def where(self, key: str = "") -> str:
        """``<source>: plugins.<name>.<key>`` for error messages."""
        dotted = f"plugins.{self.name}" + (f".{key}" if key else "")
        return f"{self.source}: {dotted}"

    def get(self, key: str, default: Any = None) -> Any:
        return self.table.get(key, default)

    def section(self, key: str) -> PluginSettings:
        """A nested table (empty when absent); not a table → :class:`SettingsError`."""
        value = self.table.get(key, {})
        if not isinstance(value, Mapping):
            raise SettingsError(f"{self.where(key)} must be a table")
        return PluginSettings(f"{self.name}.{key}", value, self.source, self.base_dir)

    def secret(self, key: str) -> Secret | None:
        """``key``, or the content of the file ``key_file`` names (trailing newline stripped)."""
        if key in self.table:
            return Secret(str(self.table[key]))
        if f"{key}_file" in self.table:
            return Secret(_read_file_value(str(self.path(f"{key}_file")), self.where(f"{key}_file")))
        return None

    def path(self, key: str) -> Path | None:
        """A path setting, relative to the config file's directory."""
        if key not in self.table:
            return None
        path = Path(str(self.table[key])).expanduser()
        return path if path.is_absolute() or self.base_dir is None else self.base_dir / path


@dataclass(frozen=True)
class Settings:
    node: NodeSettings = field(default_factory=NodeSettings)
    server: ServerSettings = field(default_factory=ServerSettings)
    tls: TlsSettings = field(default_factory=TlsSettings)
    auth: AuthSettings = field(default_factory=AuthSettings)
    organization: OrganizationSettings = field(default_factory=OrganizationSettings)
    database: DatabaseSettings = field(default_factory=DatabaseSettings)
    engine: EngineSettings = field(default_factory=EngineSettings)
    #: Named local FHIR data stores (``[data_stores.default]``, …); TOML only, secrets also as ``*_file``.
    data_stores: Mapping[str, DataStoreSettings] = field(default_factory=dict)
    #: Process plugins' own tables (``[plugins.<name>]``), or a TOML file per plugin named by
    #: ``DSF_PLUGINS_<NAME>_CONFIG``; each plugin checks its table at start.
    plugins: Mapping[str, PluginSettings] = field(default_factory=dict)

    def plugin(self, name: str) -> PluginSettings:
        """The table of plugin ``name`` (empty when the node config has none)."""
        return self.plugins.get(name) or PluginSettings(name)

    @property
    def engine_database_url(self) -> str:
        if self.engine.database_url:
            return _with_password(self.engine.database_url, self.engine.database_password)
        return f"sqlite+aiosqlite:///{(self.node.data_dir / 'engine.sqlite').resolve()}"

    @property
    def engine_fhir_base_url(self) -> str:
        return (self.engine.fhir_base_url or self.server.base_url).rstrip("/")

    @property
    def database_url(self) -> str:
        if self.database.url:
            return _with_password(self.database.url, self.database.password)
        return f"sqlite+aiosqlite:///{(self.node.data_dir / 'fhir.sqlite').resolve()}"

    @property
    def binary_dir(self) -> Path | None:
        """Where the mailbox keeps Binary payloads as files; None: in the (PostgreSQL) database."""
        if self.database.binary_dir is not None:
            return self.database.binary_dir.resolve()
        if self.database_url.startswith("sqlite"):
            return (self.node.data_dir / "binaries").resolve()
        return None

    @property
    def base_path(self) -> str:
        from urllib.parse import urlsplit

        return urlsplit(self.server.base_url).path.rstrip("/")


def _with_password(url: str, password: Secret | None) -> str:
    if password and "@" in url and ":" not in url.split("://", 1)[1].split("@", 1)[0]:
        scheme, rest = url.split("://", 1)
        user, host = rest.split("@", 1)
        url = f"{scheme}://{user}:{password}@{host}"
    return url


# Java DSF environment names that map onto ours (section, key).
JAVA_ALIASES: dict[str, tuple[str, str]] = {
    "DEV_DSF_FHIR_SERVER_BASE_URL": ("server", "base_url"),
    "DEV_DSF_FHIR_SERVER_PAGE_COUNT": ("server", "page_count"),
    "DEV_DSF_SERVER_API_HOST": ("server", "host"),
    "DEV_DSF_SERVER_API_PORT": ("server", "port"),
    "DEV_DSF_FHIR_SERVER_ORGANIZATION_IDENTIFIER_VALUE": ("organization", "identifier"),
    "DEV_DSF_FHIR_SERVER_ORGANIZATION_THUMBPRINT": ("organization", "thumbprint"),
    "DEV_DSF_FHIR_SERVER_INIT_BUNDLE": ("organization", "init_bundle"),
    "DEV_DSF_FHIR_CLIENT_CERTIFICATE": ("organization", "client_certificate"),
    "DEV_DSF_FHIR_CLIENT_CERTIFICATE_PRIVATE_KEY": ("organization", "client_private_key"),
    "DEV_DSF_FHIR_CLIENT_CERTIFICATE_PRIVATE_KEY_PASSWORD": ("organization", "client_private_key_password"),
    "DEV_DSF_FHIR_DB_URL": ("database", "url"),
    "DEV_DSF_FHIR_DB_USER_PASSWORD": ("database", "password"),
    "DEV_DSF_SERVER_AUTH_TRUST_CLIENT_CERTIFICATE_CAS": ("tls", "trust_client_cas"),
    "DEV_DSF_SERVER_AUTH_CLIENT_CERTIFICATE_HEADER": ("auth", "client_certificate_header"),
    "DEV_DSF_BPE_FHIR_SERVER_BASE_URL": ("engine", "fhir_base_url"),
    "DEV_DSF_BPE_DB_URL": ("engine", "database_url"),
    "DEV_DSF_BPE_DB_USER_PASSWORD": ("engine", "database_password"),
    "DEV_DSF_BPE_FHIR_CLIENT_TRUST_SERVER_CERTIFICATE_CAS": ("engine", "trust_server_cas"),
    "DEV_DSF_BPE_PROCESS_EXCLUDED": ("engine", "excluded_processes"),
    "DEV_DSF_BPE_PROCESS_RETIRED": ("engine", "retired_processes"),
}


def _convert(value: Any, hint: Any, where: str, base_dir: Path | None) -> Any:
    origin = get_origin(hint)
    args = get_args(hint)
    if value is None:
        return None
    if origin is Literal:
        if value not in args:
            raise SettingsError(f"{where}: must be one of {', '.join(map(str, args))}, got {value!r}")
        return value
    if args and type(None) in args:  # Optional[X]
        inner = [a for a in args if a is not type(None)][0]
        if value == "":
            return None
        return _convert(value, inner, where, base_dir)
    if hint is bool:
        if isinstance(value, bool):
            return value
        if str(value).lower() in ("true", "1", "yes", "on"):
            return True
        if str(value).lower() in ("false", "0", "no", "off"):
            return False
        raise SettingsError(f"{where}: must be true or false, got {value!r}")
    if hint in (int, float):
        try:
            return hint(value)
        except (TypeError, ValueError):
            raise SettingsError(f"{where}: must be a number, got {value!r}") from None
    if hint is Path:
        path = Path(str(value)).expanduser()
        if not path.is_absolute() and base_dir is not None:
            path = base_dir / path
        return path
    if hint is Secret:
        return Secret(str(value))
    if origin is tuple:
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, (list, tuple)):
            raise SettingsError(f"{where}: must be a list, got {value!r}")
        item = args[0] if args else str
        return tuple(_convert(v, item, where, base_dir) if item is Path else str(v) for v in value)
    if hint is str:
        if not isinstance(value, (str, int, float)):
            raise SettingsError(f"{where}: must be a string, got {value!r}")
        return str(value)
    return value


def _relative(value: Any, base_dir: Path | None) -> str:
    """A path written in the config file, resolved against the file's directory."""
    path = Path(str(value)).expanduser()
    return str(base_dir / path if base_dir is not None and not path.is_absolute() else path)


def _read_file_value(path: str, where: str) -> str:
    try:
        return Path(path).read_text().rstrip("\n")
    except OSError as exc:
        raise SettingsError(f"{where}: cannot read secret file {path}: {exc.strerror}") from None


def load_settings(config: Path | None = None, environ: Mapping[str, str] | None = None) -> Settings:
    """Build the settings from an optional TOML file and the environment."""
    env = dict(os.environ if environ is None else environ)
    raw: dict[str, dict[str, Any]] = {}
    base_dir: Path | None = None
    if config is not None:
        try:
            raw = tomllib.loads(config.read_text())
        except FileNotFoundError:
            raise SettingsError(f"config file {config} not found") from None
        except tomllib.TOMLDecodeError as exc:
            raise SettingsError(f"{config}: {exc}") from None
        base_dir = config.resolve().parent
    sections: dict[str, Any] = {}
    hints = get_type_hints(Settings)
    for section_field in fields(Settings):
        if section_field.name == "data_stores":
            sections["data_stores"] = _data_stores(raw.get("data_stores", {}), config, base_dir)
            continue
        if section_field.name == "plugins":
            sections["plugins"] = _plugins(raw.get("plugins", {}), config, base_dir, env)
            continue
        section_cls = hints[section_field.name]
        section_hints = get_type_hints(section_cls)
        section_raw = raw.get(section_field.name, {})
        if not isinstance(section_raw, dict):
            raise SettingsError(f"{config}: [{section_field.name}] must be a table")
        known = {f.name for f in fields(section_cls)}
        for key in section_raw:
            if key.removesuffix("_file") not in known:
                raise SettingsError(f"{config}: unknown setting {section_field.name}.{key}")
        values: dict[str, Any] = {}
        for f in fields(section_cls):
            where = f"{config}: {section_field.name}.{f.name}" if config else f"{section_field.name}.{f.name}"
            value: Any = dataclasses.MISSING
            value_dir = base_dir
            if f.name in section_raw:
                value = section_raw[f.name]
            elif f.name + "_file" in section_raw:
                value = _read_file_value(_relative(section_raw[f.name + "_file"], base_dir), where)
            names = [f"DSF_{section_field.name}_{f.name}".upper()]
            names += [java for java, target in JAVA_ALIASES.items() if target == (section_field.name, f.name)]
            for name in names:
                if name in env:
                    value, where, value_dir = env[name], f"environment {name}", Path.cwd()
                elif name + "_FILE" in env:
                    value = _read_file_value(env[name + "_FILE"], f"environment {name}_FILE")
                    where, value_dir = f"environment {name}_FILE", Path.cwd()
                else:
                    continue
                break
            if value is dataclasses.MISSING:
                continue
            values[f.name] = _convert(value, section_hints[f.name], where, value_dir)
        sections[section_field.name] = section_cls(**values)
    settings = Settings(**sections)
    _check(settings, config)
    return settings


def _data_stores(raw: Any, config: Path | None, base_dir: Path | None) -> dict[str, DataStoreSettings]:
    if not isinstance(raw, dict):
        raise SettingsError(f"{config}: [data_stores] must hold one table per store, e.g. [data_stores.default]")
    hints = get_type_hints(DataStoreSettings)
    known = {f.name for f in fields(DataStoreSettings)}
    stores = {}
    for name, table in raw.items():
        where = f"{config}: data_stores.{name}"
        if not isinstance(table, dict):
            raise SettingsError(f"{where} must be a table")
        values: dict[str, Any] = {}
        for key, value in table.items():
            if key.removesuffix("_file") not in known:
                raise SettingsError(f"{where}: unknown setting {key}")
            if key.endswith("_file") and key not in known:
                key, value = key.removesuffix("_file"), _read_file_value(_relative(value, base_dir), f"{where}.{key}")
            values[key] = _convert(value, hints[key], f"{where}.{key}", base_dir)
        if "base_url" not in values or not str(values["base_url"]).startswith(("http://", "https://")):
            raise SettingsError(f"{where}: base_url (an http(s) URL) is required")
        store = DataStoreSettings(**values)
        if store.auth == "basic" and not (store.username and store.password):
            raise SettingsError(f"{where}: auth = basic needs username and password")
        if store.auth == "bearer" and not store.bearer_token:
            raise SettingsError(f"{where}: auth = bearer needs bearer_token")
        stores[str(name)] = store
    return stores


_PLUGIN_CONFIG_ENV = "DSF_PLUGINS_{}_CONFIG"


def _plugins(raw: Any, config: Path | None, base_dir: Path | None, env: Mapping[str, str]) -> dict[str, PluginSettings]:
    if not isinstance(raw, dict):
        raise SettingsError(f"{config}: [plugins] must hold one table per plugin, e.g. [plugins.feasibility]")
    plugins: dict[str, PluginSettings] = {}
    for name, table in raw.items():
        if not isinstance(table, dict):
            raise SettingsError(f"{config}: plugins.{name} must be a table")
        plugins[str(name)] = PluginSettings(str(name), table, str(config) if config else "settings", base_dir)
    prefix, suffix = _PLUGIN_CONFIG_ENV.split("{}")
    for variable, value in env.items():
        if not (variable.startswith(prefix) and variable.endswith(suffix)) or len(variable) <= len(prefix + suffix):
            continue
        name = variable[len(prefix):-len(suffix)].lower()
        path = Path(value).expanduser().resolve()
        try:
            table = tomllib.loads(path.read_text())
        except OSError as exc:
            raise SettingsError(f"environment {variable}: cannot read {path}: {exc.strerror or exc}") from None
        except tomllib.TOMLDecodeError as exc:
            raise SettingsError(f"environment {variable}: {path}: {exc}") from None
        plugins[name] = PluginSettings(name, table, str(path), path.parent)
    return plugins


def _check(settings: Settings, config: Path | None) -> None:
    source = str(config) if config else "settings"
    if settings.node.mode == "dsf" and not settings.organization.identifier:
        raise SettingsError(f"{source}: organization.identifier is required (DSF_ORGANIZATION_IDENTIFIER)")
    if not settings.server.base_url.startswith(("http://", "https://")):
        raise SettingsError(f"{source}: server.base_url must be an http(s) URL, got {settings.server.base_url!r}")
    if settings.auth.store_auth == "basic" and not (settings.auth.store_username and settings.auth.store_password):
        raise SettingsError(f"{source}: auth.store_auth = basic needs auth.store_username and auth.store_password")
    if settings.auth.store_auth == "bearer" and not settings.auth.store_bearer_token:
        raise SettingsError(f"{source}: auth.store_auth = bearer needs auth.store_bearer_token")


def documented_settings() -> list[tuple[str, str, Any]]:
    """(name, type, default) of every setting, for generated docs and the doc test."""
    out = []
    hints = get_type_hints(Settings)
    for section_field in fields(Settings):
        if section_field.name == "data_stores":
            store_hints = get_type_hints(DataStoreSettings)
            for f in fields(DataStoreSettings):
                default = f.default if f.default is not dataclasses.MISSING else None
                out.append((f"data_stores.<name>.{f.name}", str(store_hints[f.name]), default))
            continue
        if section_field.name == "plugins":
            out.append(("plugins.<name>", "table", None))
            continue
        section_cls = hints[section_field.name]
        section_hints = get_type_hints(section_cls)
        for f in fields(section_cls):
            default = f.default if f.default is not dataclasses.MISSING else None
            out.append((f"{section_field.name}.{f.name}", str(section_hints[f.name]), default))
    return out
