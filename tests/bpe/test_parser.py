"""Loading: every conformance model, and the Java DSF ping/pong models as they are."""

from __future__ import annotations

from pathlib import Path

import pytest

from dsf_core.bpe.bindings import Binding, FieldInjection, Listener, Parameter
from dsf_core.bpe.events import DsfMessageEventDefinition, DsfSignalEventDefinition, DsfTimerEventDefinition
from dsf_core.bpe.model import ProcessModel
from dsf_core.bpe.parser import load_bpmn, parse_bpmn
from dsf_core.bpe.specs import (
    DsfBoundaryEvent,
    DsfElement,
    DsfEndEvent,
    DsfEventBasedGateway,
    DsfIntermediateThrowEvent,
    DsfParallelMultiInstanceTask,
    DsfServiceTask,
    DsfSubProcess,
)
from tests.bpe.runner import BPMN_DIR, PLACEHOLDERS

MODELS = sorted(BPMN_DIR.glob("*.bpmn"))


def test_there_are_conformance_models() -> None:
    assert len(MODELS) >= 20


@pytest.mark.parametrize("path", MODELS, ids=[p.stem for p in MODELS])
def test_conformance_model_parses(path: Path) -> None:
    model = load_bpmn(path, placeholders=PLACEHOLDERS)
    assert model.process_id.startswith("dsfdev_")
    assert model.version == "1.0"
    assert model.start_messages == ("start",)
    assert model.file == str(path)
    elements = list(model.elements())
    assert elements and all(isinstance(e, DsfElement) for e in elements)


def test_conformance_models_are_listed_in_the_readme() -> None:
    readme = (BPMN_DIR / "README.md").read_text()
    missing = [p.name for p in MODELS if f"`{p.name}`" not in readme]
    assert not missing, f"not in bpmn/README.md: {missing}"


# -- the Java DSF ping/pong 1.0.1.0 models ------------------------------------------------


def java_model(reference_dir: Path, name: str) -> ProcessModel:
    return load_bpmn(reference_dir / "dsf-ping-pong-1.0.1.0" / "bpe" / f"{name}.bpmn", placeholders=PLACEHOLDERS)


def test_ping(reference_dir: Path) -> None:
    ping = java_model(reference_dir, "ping")
    assert (ping.process_id, ping.version, ping.start_messages) == ("dsfdev_ping", "1.0", ("startPing",))
    services = {s.bpmn_id: s.binding.class_name for s in ping.elements() if isinstance(s, DsfServiceTask)}
    assert services == {
        "SelectPingTargets": "dev.dsf.bpe.service.SelectPingTargets",
        "LogNoResponse": "dev.dsf.bpe.service.LogNoResponse",
        "LogPong": "dev.dsf.bpe.service.LogPong",
        "LogSendError": "dev.dsf.bpe.service.LogSendError",
        "SaveResults": "dev.dsf.bpe.service.SaveResults",
    }

    mi = ping.element("SubProcess")
    assert isinstance(mi, DsfParallelMultiInstanceTask)
    assert mi.data_input.bpmn_id == "${targets.entries}"
    assert mi.input_item.bpmn_id == "target"
    assert mi.binding == Binding(async_before=True, exclusive=False, retry_cycle="R3/PT5S")
    assert isinstance(ping.spec.task_specs[mi.task_spec], DsfSubProcess)
    assert set(ping.subprocess_specs) == {"SubProcess"}

    send = ping.element("SendPing")
    assert isinstance(send, DsfIntermediateThrowEvent)
    assert isinstance(send.event_definition, DsfMessageEventDefinition)
    assert send.event_definition.name == "ping"  # no messageRef: named by the messageName field
    assert send.binding.class_name == "dev.dsf.bpe.message.SendPing"
    assert send.binding.fields == (
        FieldInjection("instantiatesCanonical", "http://dsf.dev/bpe/Process/pong|1.0"),
        FieldInjection("profile", "http://dsf.dev/fhir/StructureDefinition/task-ping|1.0"),
        FieldInjection("messageName", "ping"),
    )

    gateway = ping.element("EventBasedGateway")
    assert isinstance(gateway, DsfEventBasedGateway)
    assert gateway.binding.execution_listeners == (
        Listener("start", "dev.dsf.bpe.listener.SetCorrelationKeyListener"),
    )
    # the gateway owns its branches' event definitions
    branches = {type(d).__name__: d for d in gateway.event_definition.event_definitions}
    timer = branches["DsfTimerEventDefinition"]
    assert isinstance(timer, DsfTimerEventDefinition)
    assert (timer.name, timer.kind, timer.expression) == ("PongTimer", "timeDuration", "PT20S")
    assert branches["DsfMessageEventDefinition"].name == "pong"

    [condition] = [c.args[0] for c, _ in ping.element("Gateway_0z5gz96").cond_task_specs if c is not None]
    assert condition == (
        "${execution.hasVariable('statusCode') && (statusCode == 'not-allowed' || statusCode == 'not-reachable')}"
    )
    assert ping.element("SubProcessEndEvent").binding.async_after
    assert ping.class_names() == frozenset(services.values()) | {
        "dev.dsf.bpe.message.SendPing", "dev.dsf.bpe.listener.SetCorrelationKeyListener"
    }


def test_pong(reference_dir: Path) -> None:
    pong = java_model(reference_dir, "pong")
    assert (pong.process_id, pong.start_messages) == ("dsfdev_pong", ("ping",))
    end = pong.element("SendPong")
    assert isinstance(end, DsfEndEvent)
    assert end.event_definition.name == "pong"
    assert end.binding.class_name == "dev.dsf.bpe.message.SendPong"
    assert end.binding.field_values({}) == {
        "profile": "http://dsf.dev/fhir/StructureDefinition/task-pong|1.0",
        "messageName": "pong",
        "instantiatesCanonical": "http://dsf.dev/bpe/Process/ping|1.0",
    }
    boundary = pong.element("SelectPongTargetErrorBoundaryEvent")
    assert isinstance(boundary, DsfBoundaryEvent) and boundary.cancel_activity
    assert boundary.event_definition.code == "target_not_allowed"


def test_ping_autostart(reference_dir: Path) -> None:
    autostart = java_model(reference_dir, "ping-autostart")
    assert autostart.process_id == "dsfdev_pingAutostart"
    assert autostart.start_messages == ("startPingAutostart", "stopPingAutostart")
    throw = autostart.element("StopIntermediateSignalThrowEvent")
    assert isinstance(throw.event_definition, DsfSignalEventDefinition)
    assert throw.event_definition.name == "stop_dsfdev_pingAutostart_1.0"
    assert isinstance(autostart.element("StopSignalEndEvent").event_definition, DsfSignalEventDefinition)
    assert autostart.element("SendStartPing").event_definition.name == "startPing"
    service = autostart.element("SetTargetAndConfigureTimer")
    assert service.binding.outputs == (Parameter("stop", "no"),)
    gateway = autostart.element("Gateway_1ndxuiu")
    timer = next(d for d in gateway.event_definition.event_definitions if isinstance(d, DsfTimerEventDefinition))
    assert timer.expression == "${timerInterval}"
    assert autostart.element("IntermediateTimerCatchEvent").binding.outputs == (Parameter("stop", "no"),)


def test_placeholders_are_replaced(reference_dir: Path) -> None:
    path = reference_dir / "dsf-ping-pong-1.0.1.0" / "bpe" / "pong.bpmn"
    pong = load_bpmn(path, placeholders={"version": "2.7"})
    assert pong.version == "2.7"
    assert pong.element("SendPong").binding.field_values({})["profile"].endswith("|2.7")
    raw = load_bpmn(path)  # no placeholders given: the text stays as drawn
    assert raw.version == "#{version}"


def test_file_name_in_messages_can_be_chosen(reference_dir: Path) -> None:
    path = reference_dir / "dsf-ping-pong-1.0.1.0" / "bpe" / "pong.bpmn"
    model = load_bpmn(path, placeholders=PLACEHOLDERS, file="ping-pong/bpe/pong.bpmn")
    assert model.file == "ping-pong/bpe/pong.bpmn"
    assert model.spec.file == "ping-pong/bpe/pong.bpmn"


def test_properties_become_extensions() -> None:
    model = parse_bpmn(
        (BPMN_DIR / "message-start-service-end.bpmn").read_text()
        .replace('camunda:versionTag="#{version}">', 'camunda:versionTag="1.0"><bpmn:extensionElements>'
                 '<camunda:properties><camunda:property name="owner" value="dsf" /></camunda:properties>'
                 '</bpmn:extensionElements>'),
        "properties.bpmn",
    )
    assert model.extensions == {"owner": "dsf"}


def test_placeholder_values_are_escaped() -> None:
    document = (BPMN_DIR / "message-start-service-end.bpmn").read_text()
    model = parse_bpmn(document, "escaped.bpmn", placeholders={"version": 'a&b<"c">'})
    assert model.version == 'a&b<"c">'


def test_elements_expose_message_names_and_timers() -> None:
    model = load_bpmn(BPMN_DIR / "event-based-gateway.bpmn", placeholders=PLACEHOLDERS)
    assert model.element("StartEvent").message_name == "start"
    gateway = model.element("ReplyOrTimeout")
    assert [d.name for d in gateway.event_definition.event_definitions] == ["reply", "Timeout"]
    timer = gateway.event_definition.event_definitions[1]
    assert (timer.definition.kind.value, timer.definition.text) == ("timeDuration", "PT20S")
    sender = load_bpmn(BPMN_DIR / "send-receive.bpmn", placeholders=PLACEHOLDERS)
    assert sender.element("SendRequest").message_name == "request"
    assert sender.element("ReceiveReply").message_name == "reply"
    assert sender.element("EndEvent").message_name is None
