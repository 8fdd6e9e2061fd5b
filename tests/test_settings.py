"""Settings: TOML file, DSF_* and DEV_DSF_* environment, *_FILE secrets, clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from dsf_core.settings import Secret, SettingsError, load_settings


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "node.toml"
    path.write_text(text)
    return path


def test_file_values_and_relative_paths(tmp_path: Path) -> None:
    config = write(
        tmp_path,
        """
[organization]
identifier = "dic-1.test"
client_certificate = "certs/client.crt"
[server]
port = 9443
base_url = "https://dic-1.test/fhir"
""",
    )
    settings = load_settings(config, environ={})
    assert settings.organization.identifier == "dic-1.test"
    assert settings.organization.client_certificate == tmp_path / "certs" / "client.crt"
    assert settings.server.port == 9443
    assert settings.base_path == "/fhir"
    assert settings.database_url.startswith("sqlite+aiosqlite:///")


def test_environment_overrides_and_java_names(tmp_path: Path) -> None:
    config = write(tmp_path, '[organization]\nidentifier = "file.test"\n')
    env = {
        "DSF_ORGANIZATION_IDENTIFIER": "env.test",
        "DEV_DSF_FHIR_SERVER_BASE_URL": "https://java.test/fhir",
        "DEV_DSF_FHIR_SERVER_PAGE_COUNT": "50",
    }
    settings = load_settings(config, environ=env)
    assert settings.organization.identifier == "env.test"
    assert settings.server.base_url == "https://java.test/fhir"
    assert settings.server.page_count == 50


def test_file_secrets_are_read_and_masked(tmp_path: Path) -> None:
    secret = tmp_path / "db_password"
    secret.write_text("s3cret\n")
    config = write(tmp_path, '[organization]\nidentifier = "x.test"\n[database]\nurl = "postgresql://dsf@db:5432/fhir"\n')
    settings = load_settings(config, environ={"DSF_DATABASE_PASSWORD_FILE": str(secret)})
    assert settings.database.password == "s3cret"
    assert isinstance(settings.database.password, Secret)
    assert "s3cret" not in repr(settings)
    assert settings.database_url == "postgresql://dsf:s3cret@db:5432/fhir"


@pytest.mark.parametrize(
    ("text", "env", "message"),
    [
        ("[server]\nport = 1\n", {}, "organization.identifier is required"),
        ('[organization]\nidentifier = "a"\n[server]\nport = "many"\n', {}, "server.port: must be a number"),
        ('[organization]\nidentifier = "a"\n[server]\nbogus = 1\n', {}, "unknown setting server.bogus"),
        ('[organization]\nidentifier = "a"\n[node]\nmode = "other"\n', {}, "node.mode: must be one of"),
        ('[organization\n', {}, "node.toml"),
        ('[organization]\nidentifier = "a"\n', {"DSF_TLS_PRIVATE_KEY_PASSWORD_FILE": "/nonexistent"}, "cannot read secret file"),
    ],
)
def test_errors_name_the_source_and_key(tmp_path: Path, text: str, env: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        load_settings(write(tmp_path, text), environ=env)


def test_missing_config_file(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="not found"):
        load_settings(tmp_path / "absent.toml", environ={})


def test_plugin_tables_from_the_file_and_from_a_file_per_plugin(tmp_path: Path) -> None:
    (tmp_path / "secret.txt").write_text("s3cret\n")
    config = write(tmp_path, """
[organization]
identifier = "dic-1.test"
[plugins.feasibility]
request_task_timeout = "PT5M"
mapping = "mapping.json"
token_file = "secret.txt"
[plugins.feasibility.networks."medizininformatik-initiative.de"]
obfuscate = false
""")
    other = tmp_path / "elsewhere" / "transfer.toml"
    other.parent.mkdir()
    other.write_text('private_key = "dms.key"\n')
    settings = load_settings(config, environ={"DSF_PLUGINS_DATA_TRANSFER_CONFIG": str(other)})
    feasibility = settings.plugin("feasibility")
    assert feasibility.get("request_task_timeout") == "PT5M"
    assert feasibility.path("mapping") == tmp_path / "mapping.json"
    token = feasibility.secret("token")
    assert token == "s3cret" and "s3cret" not in repr(token)
    network = feasibility.section("networks").section("medizininformatik-initiative.de")
    assert network.get("obfuscate") is False
    assert network.where("stores") == f"{config}: plugins.feasibility.networks.medizininformatik-initiative.de.stores"
    transfer = settings.plugin("data_transfer")
    assert transfer.path("private_key") == other.parent / "dms.key"
    assert settings.plugin("absent").table == {} and settings.plugin("absent").secret("x") is None


def test_plugin_table_errors_name_the_source(tmp_path: Path) -> None:
    config = write(tmp_path, '[organization]\nidentifier = "a.test"\n[plugins]\nfeasibility = 3\n')
    with pytest.raises(SettingsError, match="plugins.feasibility must be a table"):
        load_settings(config, environ={})
    config = write(tmp_path, '[organization]\nidentifier = "a.test"\n[plugins.x]\nnetworks = 1\n')
    with pytest.raises(SettingsError, match=r"node.toml: plugins.x.networks must be a table"):
        load_settings(config, environ={}).plugin("x").section("networks")
    with pytest.raises(SettingsError, match="DSF_PLUGINS_X_CONFIG: cannot read"):
        load_settings(config, environ={"DSF_PLUGINS_X_CONFIG": str(tmp_path / "missing.toml")})


def test_secret_files_named_in_the_config_are_relative_to_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "secrets").mkdir()
    (tmp_path / "secrets" / "db").write_text("pw1\n")
    (tmp_path / "secrets" / "store").write_text("pw2\n")
    config = write(tmp_path, """
[organization]
identifier = "x.test"
[database]
url = "postgresql://dsf@db:5432/fhir"
password_file = "secrets/db"
[data_stores.default]
base_url = "https://kds.test/fhir"
auth = "basic"
username = "u"
password_file = "secrets/store"
""")
    monkeypatch.chdir("/")
    settings = load_settings(config, environ={})
    assert settings.database.password == "pw1"
    assert settings.data_stores["default"].password == "pw2"
