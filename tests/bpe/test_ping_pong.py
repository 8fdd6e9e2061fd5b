"""The Java DSF ping/pong 1.0 models, unchanged, executed with stubs bound by Java class name."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from dsf_core.bpe.events import next_timer_due
from dsf_core.bpe.parser import load_bpmn
from dsf_core.bpe.scripting import BpmnErrorRaised, DsfScriptEngine
from dsf_core.bpe.serializer import create_serializer
from tests.bpe.runner import PLACEHOLDERS, START, Run, StubHost


def select_ping_targets(task: Any, fields: Any) -> None:
    task.data["targets"] = {"entries": [
        {"organization": org, "endpoint": f"https://{org}/fhir", "correlationKey": f"ck-{org}"}
        for org in ("dic-1", "dic-2", "dic-3")
    ]}


def send_ping(task: Any, fields: Any) -> None:
    if task.data["target"]["organization"] == "dic-3":
        task.data["statusCode"] = "not-reachable"  # what SendPing does when the POST fails


def set_correlation_key(task: Any, fields: Any) -> None:
    task.data["correlationKey"] = task.data["target"]["correlationKey"]


def status(code: str) -> Any:
    def log(task: Any, fields: Any) -> None:
        task.data[f"statusCode_{task.data['target']['correlationKey']}"] = code

    return log


PING_CLASSES = {
    "dev.dsf.bpe.service.SelectPingTargets": select_ping_targets,
    "dev.dsf.bpe.message.SendPing": send_ping,
    "dev.dsf.bpe.listener.SetCorrelationKeyListener": set_correlation_key,
    "dev.dsf.bpe.service.LogPong": status("pong-received"),
    "dev.dsf.bpe.service.LogNoResponse": status("pong-missing"),
    "dev.dsf.bpe.service.LogSendError": status("not-reachable"),
    "dev.dsf.bpe.service.SaveResults": lambda task, fields: None,
}


def java(reference_dir: Path, name: str, host: StubHost) -> Run:
    return Run(load_bpmn(reference_dir / "dsf-ping-pong-1.0.1.0" / "bpe" / f"{name}.bpmn",
                         placeholders=PLACEHOLDERS), host)


def test_ping_pong_received_missing_and_unreachable(reference_dir: Path) -> None:
    run = java(reference_dir, "ping", StubHost(dict(PING_CLASSES))).start("startPing")
    sends = [c for c in run.host.calls if c.kind == "send"]
    assert len(sends) == 3 and {c.fields["messageName"] for c in sends} == {"ping"}
    assert sends[0].fields["instantiatesCanonical"] == "http://dsf.dev/bpe/Process/pong|1.0"

    gateways = run.waiting("EventBasedGateway")
    assert sorted(g.data["correlationKey"] for g in gateways) == ["ck-dic-1", "ck-dic-2"]
    assert next_timer_due(run.workflow).isoformat() == "2026-01-01T09:00:20+00:00"  # type: ignore[union-attr]
    dic1 = next(g for g in gateways if g.data["correlationKey"] == "ck-dic-1")
    run.deliver("pong", dic1)
    run.advance(seconds=20)

    assert run.completed
    assert {k: v for k, v in run.data.items() if k.startswith("statusCode_")} == {
        "statusCode_ck-dic-1": "pong-received",
        "statusCode_ck-dic-2": "pong-missing",
        "statusCode_ck-dic-3": "not-reachable",
    }
    assert run.host.elements()[-1] == "SaveResults"


def test_ping_survives_a_serialization_round_trip(reference_dir: Path) -> None:
    run = java(reference_dir, "ping", StubHost(dict(PING_CLASSES))).start("startPing")
    serializer = create_serializer()
    due = next_timer_due(run.workflow)
    restored = serializer.deserialize_json(serializer.serialize_json(run.workflow))
    restored.script_engine = DsfScriptEngine(run.host, clock=run.clock)
    run.workflow = restored
    assert next_timer_due(restored) == due
    for gateway in run.waiting("EventBasedGateway"):
        run.deliver("pong", gateway)
    assert run.completed
    assert run.data["statusCode_ck-dic-2"] == "pong-received"
    serializer.serialize_json(restored)  # a completed workflow serializes too


@pytest.mark.parametrize(("allowed", "path"), [(True, ["LogPing", "SelectPongTarget", "SendPong"]),
                                              (False, ["LogPing", "SelectPongTarget"])])
def test_pong(reference_dir: Path, allowed: bool, path: list[str]) -> None:
    def select(task: Any, fields: Any) -> None:
        if not allowed:
            raise BpmnErrorRaised("target_not_allowed", "endpoint unknown")

    host = StubHost({"dev.dsf.bpe.service.SelectPongTarget": select})
    run = java(reference_dir, "pong", host).start("ping")
    assert host.elements() == path
    assert run.completed
    assert ("SelectPongTarget" in run.cancelled()) is not allowed


def test_ping_autostart_loops_until_stopped(reference_dir: Path) -> None:
    def configure(task: Any, fields: Any) -> None:
        task.data["timerInterval"] = task.data.get("timer-interval", "PT24H")

    host = StubHost({"dev.dsf.bpe.service.SetTargetAndConfigureTimer": configure})
    run = java(reference_dir, "ping-autostart", host).start("startPingAutostart", **{"timer-interval": "PT1H"})
    # the start throws the stop signal for other instances, then sends startPing to itself
    assert [e.event_definition.name for e in run.workflow.get_events()] == ["stop_dsfdev_pingAutostart_1.0"]
    assert host.elements("send") == ["SendStartPing"]
    for hour in (1, 2, 3):
        assert run.advance_to_next_timer() == START.replace(hour=9 + hour)
    assert host.elements("send") == ["SendStartPing"] * 4
    run.signal("stop_dsfdev_pingAutostart_1.0")
    assert run.completed and run.data["stop"] == "yes"


def test_stop_ping_autostart_throws_the_signal(reference_dir: Path) -> None:
    run = java(reference_dir, "ping-autostart", StubHost()).start("stopPingAutostart")
    assert run.completed
    assert [e.event_definition.name for e in run.workflow.get_events()] == ["stop_dsfdev_pingAutostart_1.0"]
