"""`dsf demo --json`: the whole network comes up and every process ends as expected."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path


def test_demo_json_reports_every_process(tmp_path: Path) -> None:
    run = subprocess.run(
        [sys.executable, "-m", "dsf_core", "demo", "--json", "--patients", "40", "--directory", str(tmp_path / "demo")],
        capture_output=True, text=True, timeout=300,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    document = json.loads(run.stdout)
    assert document["ok"] is True
    results = document["results"]
    by_process: dict[str, list[dict[str, object]]] = {}
    for result in results:
        assert set(result) == {"process", "organization", "task_status", "codes", "seconds"}
        assert result["task_status"] == "completed", result
        assert isinstance(result["seconds"], float | int) and result["seconds"] > 0
        by_process.setdefault(str(result["process"]), []).append(result)
    pings = by_process["dsfdev_ping"]
    assert sorted(str(r["organization"]) for r in pings) == ["dic-1.demo", "dic-2.demo", "dic-3.demo", "dms.demo", "hrp.demo"]
    assert all(r["codes"] == ["pong-received"] for r in pings)
    [feasibility] = by_process["medizininformatik-initiativede_feasibilityRequest"]
    assert feasibility["organization"] == "hrp.demo"
    assert feasibility["codes"] == ["answered", "measure-report-reference"]
    [transfer] = by_process["medizininformatik-initiativede_dataSend"]
    assert (transfer["organization"], transfer["codes"]) == ("dic-1.demo", ["receipt-ok"])
    reports = by_process["medizininformatik-initiativede_reportSend"]
    assert sorted(str(r["organization"]) for r in reports) == ["dic-1.demo", "dic-2.demo", "dic-3.demo"]
    assert all("receipt-ok" in r["codes"] for r in reports)  # type: ignore[operator]
    assert len(results) == 5 + 1 + 1 + 3
    assert "ready in" in run.stderr and "▸ KDS report" in run.stderr  # live progress on stderr


def test_demo_refuses_nonsense(tmp_path: Path) -> None:
    run = subprocess.run([sys.executable, "-m", "dsf_core", "demo", "--patients", "0"], capture_output=True, text=True)
    assert run.returncode == 2 and "--patients must be at least 1" in run.stderr
