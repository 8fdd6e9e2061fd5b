"""Transaction Bundles of generated data: split for loading, streamed whole, and ``dsf data generate``."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from dsf_core.cli.main import main
from dsf_core.data import (
    DataError,
    DatasetSpec,
    PatientGroup,
    generate,
    patient_groups,
    transaction_bundle,
    transaction_bundles,
    write_transaction,
)

SPEC = DatasetSpec(patients=25, seed=2)


def test_split_keeps_patients_whole_and_references_resolvable() -> None:
    dataset = generate(SPEC)
    bundles = list(transaction_bundles(dataset.groups, 10))
    assert len(bundles) == 3
    sizes = [len(b["entry"]) for b in bundles]
    assert sizes == [sum(len(g.resources) for g in dataset.groups[i : i + 10]) for i in (0, 10, 20)]
    written: set[str] = set()
    for bundle in bundles:
        assert bundle["type"] == "transaction" and bundle["entry"][0]["resource"]["resourceType"] == "Patient"
        for entry in bundle["entry"]:
            resource = entry["resource"]
            assert entry["request"] == {"method": "PUT", "url": f"{resource['resourceType']}/{resource['id']}"}
            written.add(entry["request"]["url"])
        for entry in bundle["entry"]:
            if "medicationReference" in entry["resource"]:
                assert entry["resource"]["medicationReference"]["reference"] in written
    assert [e["resource"] for b in bundles for e in b["entry"]] == list(dataset.resources())
    with pytest.raises(DataError, match="at least 1"):
        next(transaction_bundles(dataset.groups, 0))


class Recorder(io.BytesIO):
    """Output that notes how many groups had been generated when each write happened."""

    def __init__(self) -> None:
        super().__init__()
        self.pulled = 0
        self.pulled_at_write: list[int] = []

    def write(self, data: object) -> int:
        self.pulled_at_write.append(self.pulled)
        return super().write(data)  # type: ignore[call-overload, no-any-return]


def test_write_streams_one_patient_at_a_time_and_equals_the_whole_bundle() -> None:
    out = Recorder()

    def counted() -> Iterator[PatientGroup]:
        for group in patient_groups(SPEC):
            out.pulled += 1
            yield group

    counts = write_transaction(counted(), out)
    assert out.pulled_at_write[1] == 1  # the first entry went out before the second patient was generated
    assert orjson.loads(out.getvalue()) == transaction_bundle(generate(SPEC).resources())
    assert sum(counts.values()) == len(list(generate(SPEC).resources())) and counts["Patient"] == 25


def test_cli_writes_the_same_file_for_the_same_arguments(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["data", "generate", "--patients", "25", "--seed", "2", "--quiet"]
    assert main([*args, "--out", str(tmp_path / "a.json")]) == 0
    assert main([*args, "--out", str(tmp_path / "b.json")]) == 0
    first = (tmp_path / "a.json").read_bytes()
    assert first == (tmp_path / "b.json").read_bytes()
    out = io.BytesIO()
    write_transaction(patient_groups(SPEC), out)
    assert first == out.getvalue()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json", "b.json"]  # no .part left behind
    assert capsys.readouterr().err == ""

    main(["data", "generate", "--patients", "3", "--seed", "2", "--id-prefix", "x", "--reference-date", "2020-02-29",
          "--out", str(tmp_path / "c.json")])
    bundle = orjson.loads((tmp_path / "c.json").read_bytes())
    assert bundle["entry"][0]["request"]["url"] == "Patient/x-1"
    assert all(e["resource"]["birthDate"] < "2020-02-29" for e in bundle["entry"] if "birthDate" in e["resource"])
    assert "wrote " in capsys.readouterr().err


def test_cli_writes_to_standard_output(capsysbinary: pytest.CaptureFixture[bytes]) -> None:
    assert main(["data", "generate", "--patients", "2", "--out", "-", "--quiet"]) == 0
    bundle = orjson.loads(capsysbinary.readouterr().out)
    assert bundle["entry"][0]["resource"]["id"] == "s0-1"


@pytest.mark.parametrize(
    "args, message",
    [
        (["--patients", "-5"], "patients must be a whole number of at least 1, got -5"),
        (["--patients", "5", "--id-prefix", "a b"], "id prefix 'a b'"),
    ],
)
def test_cli_names_bad_arguments(tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str) -> None:
    assert main(["data", "generate", *args, "--out", str(tmp_path / "x.json")]) == 2
    assert f"dsf: error: {message}" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())


def test_cli_names_an_unwritable_destination(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "missing" / "x.json"
    assert main(["data", "generate", "--patients", "5", "--out", str(missing)]) == 2
    assert f"{missing}: cannot write: No such file or directory" in capsys.readouterr().err
    assert main(["data", "generate", "--patients", "5", "--out", str(tmp_path)]) == 2
    assert "is a directory" in capsys.readouterr().err


def test_cli_rejects_a_bad_date(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["data", "generate", "--patients", "5", "--out", "x", "--reference-date", "2026-13-01"])
    assert "not a date YYYY-MM-DD: '2026-13-01'" in capsys.readouterr().err


def test_progress_names_patients_and_resources(capsys: pytest.CaptureFixture[str]) -> None:
    from dsf_core.cli.data import _with_progress

    groups = list(_with_progress(patient_groups(SPEC), 25, interval=0.0))
    lines = capsys.readouterr().err.splitlines()
    assert len(groups) == len(lines) == 25
    assert lines[-1] == f"generated 25/25 patients ({sum(len(g.resources) for g in groups)} resources)"
