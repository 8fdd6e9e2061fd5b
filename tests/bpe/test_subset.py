"""Constructs outside the DSF subset are rejected at load time, naming file and element id."""

from __future__ import annotations

import pytest

from dsf_core.bpe.model import ModelError
from dsf_core.bpe.parser import parse_bpmn

HEADER = (
    '<?xml version="1.0" encoding="UTF-8"?>\n'
    '<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL" '
    'xmlns:camunda="http://camunda.org/schema/1.0/bpmn" xmlns:zeebe="http://camunda.org/schema/zeebe/1.0" '
    'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" id="Definitions_1" '
    'targetNamespace="http://bpmn.io/schema/bpmn">\n'
)
PROCESS = '<bpmn:process id="dsfdev_test" isExecutable="true" camunda:versionTag="1.0">'
BEGIN = '<bpmn:startEvent id="Begin"><bpmn:messageEventDefinition messageRef="M" /></bpmn:startEvent>\n'
MESSAGES = '<bpmn:message id="M" name="start" /><bpmn:message id="Reply" name="reply" />'


def model(body: str, *, extra: str = "", process: str = PROCESS, begin: str = BEGIN) -> str:
    return f"{HEADER}{process}\n{begin}{body}\n</bpmn:process>\n{MESSAGES}{extra}\n</bpmn:definitions>\n"


def service(element_id: str = "Work", attrs: str = 'camunda:class="x.Y"', inner: str = "") -> str:
    return f'<bpmn:serviceTask id="{element_id}" {attrs}>{inner}</bpmn:serviceTask>'


def ext(inner: str) -> str:
    return f"<bpmn:extensionElements>{inner}</bpmn:extensionElements>"


def flow(fid: str, source: str, target: str, condition: str | None = None) -> str:
    if condition is None:
        return f'<bpmn:sequenceFlow id="{fid}" sourceRef="{source}" targetRef="{target}" />'
    return (f'<bpmn:sequenceFlow id="{fid}" sourceRef="{source}" targetRef="{target}">'
            f"<bpmn:conditionExpression>{condition}</bpmn:conditionExpression></bpmn:sequenceFlow>")


def timer_catch(element_id: str, kind: str, value: str) -> str:
    return (f'<bpmn:intermediateCatchEvent id="{element_id}"><bpmn:timerEventDefinition>'
            f"<bpmn:{kind}>{value}</bpmn:{kind}></bpmn:timerEventDefinition></bpmn:intermediateCatchEvent>")


MI = '<bpmn:multiInstanceLoopCharacteristics camunda:collection="${targets}" camunda:elementVariable="t">'
SUB = ('<bpmn:subProcess id="Sub">{mi}<bpmn:startEvent id="SubStart" />{inner}<bpmn:endEvent id="SubEnd" />'
       "{flows}</bpmn:subProcess>")

# (case, document, element id named in the error, fragment of the reason)
CASES: list[tuple[str, str, str | None, str]] = [
    # --- element types outside the subset
    ("script task", model('<bpmn:scriptTask id="Script" scriptFormat="groovy"><bpmn:script>x</bpmn:script></bpmn:scriptTask>'),
     "Script", "script tasks are not supported"),
    ("business rule task", model('<bpmn:businessRuleTask id="Rule" camunda:decisionRef="d" />'),
     "Rule", "business rule tasks (DMN)"),
    ("call activity", model('<bpmn:callActivity id="Call" calledElement="other" />'), "Call", "call activities"),
    ("transaction", model('<bpmn:transaction id="Tx" />'), "Tx", "transaction sub-processes"),
    ("ad-hoc sub-process", model('<bpmn:adHocSubProcess id="AdHoc" />'), "AdHoc", "ad-hoc"),
    ("manual task", model('<bpmn:manualTask id="Manual" />'), "Manual", "manual tasks"),
    ("untyped task", model('<bpmn:task id="Plain" />'), "Plain", "untyped tasks"),
    ("complex gateway", model('<bpmn:complexGateway id="Complex" />'), "Complex", "complex gateways"),
    ("inclusive gateway", model('<bpmn:inclusiveGateway id="Or" />'), "Or", "inclusive gateways"),
    ("data object", model('<bpmn:dataObject id="DataObject_1" />'), "DataObject_1", "data objects"),
    ("data store reference", model('<bpmn:dataStoreReference id="Store" />'), "Store", "data stores"),
    ("data store", model("", extra='<bpmn:dataStore id="GlobalStore" name="s" />'), "GlobalStore", "data stores"),
    ("escalation", model("", extra='<bpmn:escalation id="Esc" escalationCode="e" />'), "Esc", "escalations"),
    ("event sub-process", model(
        '<bpmn:subProcess id="OnError" triggeredByEvent="true"><bpmn:startEvent id="S2" /><bpmn:endEvent id="E2" />'
        '<bpmn:sequenceFlow id="F2" sourceRef="S2" targetRef="E2" /></bpmn:subProcess>'),
     "OnError", "event sub-processes"),
    ("standard loop", model(service(inner="<bpmn:standardLoopCharacteristics />")), "Work", "loop activities"),
    ("data association", model(service(inner='<bpmn:dataInputAssociation id="In"><bpmn:targetRef>Work</bpmn:targetRef>'
                                             "</bpmn:dataInputAssociation>")), "In", "data associations"),
    # --- events outside the subset
    ("compensation boundary", model(service() + '<bpmn:boundaryEvent id="Comp" attachedToRef="Work">'
                                                "<bpmn:compensateEventDefinition /></bpmn:boundaryEvent>"),
     "Comp", "compensation"),
    ("escalation throw", model('<bpmn:intermediateThrowEvent id="Escalate"><bpmn:escalationEventDefinition />'
                               "</bpmn:intermediateThrowEvent>"), "Escalate", "escalation events"),
    ("conditional catch", model('<bpmn:intermediateCatchEvent id="When"><bpmn:conditionalEventDefinition>'
                                "<bpmn:condition>${x}</bpmn:condition></bpmn:conditionalEventDefinition>"
                                "</bpmn:intermediateCatchEvent>"), "When", "conditional events"),
    ("link event", model('<bpmn:intermediateThrowEvent id="Link"><bpmn:linkEventDefinition name="l" />'
                         "</bpmn:intermediateThrowEvent>"), "Link", "link events"),
    ("terminate end", model('<bpmn:endEvent id="Kill"><bpmn:terminateEventDefinition /></bpmn:endEvent>'),
     "Kill", "terminate end events"),
    ("error end", model('<bpmn:endEvent id="Fail"><bpmn:errorEventDefinition /></bpmn:endEvent>'),
     "Fail", "errorEventDefinition is not supported on bpmn:endEvent"),
    ("timer start", model("", begin='<bpmn:startEvent id="Begin"><bpmn:messageEventDefinition messageRef="M" />'
                                    "</bpmn:startEvent><bpmn:startEvent id=\"Tick\"><bpmn:timerEventDefinition>"
                                    "<bpmn:timeCycle>R/PT1H</bpmn:timeCycle></bpmn:timerEventDefinition></bpmn:startEvent>"),
     "Tick", "timer start events"),
    ("none start", model("", begin='<bpmn:startEvent id="Begin" />'), "Begin", "a none start event is only allowed"),
    ("no message start", model("", begin='<bpmn:startEvent id="Begin"><bpmn:signalEventDefinition signalRef="S" />'
                                         "</bpmn:startEvent>", extra='<bpmn:signal id="S" name="s" />'),
     "dsfdev_test", "needs a message start event"),
    ("message boundary", model('<bpmn:receiveTask id="Wait" messageRef="Reply" />'
                               '<bpmn:boundaryEvent id="Cancel" attachedToRef="Wait">'
                               '<bpmn:messageEventDefinition messageRef="M" /></bpmn:boundaryEvent>'),
     "Cancel", "messageEventDefinition is not supported on bpmn:boundaryEvent"),
    ("error boundary on user task", model(
        '<bpmn:userTask id="Ask" camunda:formKey="q" /><bpmn:boundaryEvent id="Err" attachedToRef="Ask">'
        "<bpmn:errorEventDefinition /></bpmn:boundaryEvent>"), "Err", "service tasks, send tasks and sub-processes"),
    ("non-interrupting error", model(service() + '<bpmn:boundaryEvent id="Err" cancelActivity="false" '
                                                 'attachedToRef="Work"><bpmn:errorEventDefinition /></bpmn:boundaryEvent>'),
     "Err", "always interrupting"),
    ("multiple event definitions", model(
        '<bpmn:intermediateCatchEvent id="Either"><bpmn:messageEventDefinition messageRef="Reply" />'
        "<bpmn:timerEventDefinition><bpmn:timeDuration>PT1S</bpmn:timeDuration></bpmn:timerEventDefinition>"
        "</bpmn:intermediateCatchEvent>"), "Either", "several event definitions"),
    ("none intermediate throw", model('<bpmn:intermediateThrowEvent id="Milestone" />'), "Milestone",
     "without a message or signal definition"),
    ("catch without messageRef", model('<bpmn:intermediateCatchEvent id="Wait"><bpmn:messageEventDefinition />'
                                       "</bpmn:intermediateCatchEvent>"), "Wait", "needs a messageRef"),
    ("unknown messageRef", model('<bpmn:receiveTask id="Wait" messageRef="Nope" />'), "Wait", "names no bpmn:message"),
    ("signal name expression", model("", extra='<bpmn:signal id="S" name="stop_${x}" />'), "S", "must be literal"),
    # --- missing or unsupported bindings
    ("service task without class", model('<bpmn:serviceTask id="Work" />'), "Work", "needs camunda:class"),
    ("send task without class", model('<bpmn:sendTask id="Send" />'), "Send", "needs camunda:class"),
    ("message throw without class", model('<bpmn:intermediateThrowEvent id="Ping"><bpmn:messageEventDefinition '
                                          'id="PingDef" /></bpmn:intermediateThrowEvent>'),
     "PingDef", "needs camunda:class"),
    ("message end without class", model('<bpmn:endEvent id="Pong"><bpmn:messageEventDefinition id="PongDef" '
                                        'messageRef="Reply" /></bpmn:endEvent>'), "PongDef", "needs camunda:class"),
    ("camunda:expression", model(service(attrs='camunda:expression="${bean.run()}"')), "Work", "camunda:expression"),
    ("camunda:delegateExpression", model(service(attrs='camunda:delegateExpression="${bean}"')), "Work",
     "camunda:delegateExpression"),
    ("external task", model(service(attrs='camunda:type="external" camunda:topic="t"')), "Work", "external tasks"),
    ("connector", model(service(attrs="", inner=ext("<camunda:connector><camunda:connectorId>http</camunda:connectorId>"
                                                    "</camunda:connector>"))), "Work", "connectors"),
    ("user task without form key", model('<bpmn:userTask id="Ask" />'), "Ask", "needs camunda:formKey"),
    ("user task assignee", model('<bpmn:userTask id="Ask" camunda:formKey="q" camunda:assignee="bob" />'), "Ask",
     "assignment is not supported"),
    ("generated form", model('<bpmn:userTask id="Ask" camunda:formKey="q">' + ext(
        '<camunda:formData><camunda:formField id="f" type="string" /></camunda:formData>') + "</bpmn:userTask>"),
     "Ask", "generated forms"),
    ("listener by expression", model(service(inner=ext('<camunda:executionListener expression="${x}" event="start" />'))),
     "Work", "expressions are not supported"),
    ("listener with script", model(service(inner=ext(
        '<camunda:executionListener class="x.L" event="start"><camunda:script scriptFormat="js">x</camunda:script>'
        "</camunda:executionListener>"))), "Work", "camunda:script is not supported"),
    ("take listener", model(service() + '<bpmn:endEvent id="Done" />' + (
        '<bpmn:sequenceFlow id="Go" sourceRef="Work" targetRef="Done">'
        + ext('<camunda:executionListener class="x.L" event="take" />') + "</bpmn:sequenceFlow>")),
     "Go", "camunda:executionListener is not supported on bpmn:sequenceFlow"),
    ("timeout task listener", model('<bpmn:userTask id="Ask" camunda:formKey="q">' + ext(
        '<camunda:taskListener class="x.L" event="timeout" />') + "</bpmn:userTask>"), "Ask", "event 'timeout'"),
    # assignment/delete/update never happen to a user task answered through a QuestionnaireResponse
    ("assignment task listener", model('<bpmn:userTask id="Ask" camunda:formKey="q">' + ext(
        '<camunda:taskListener class="x.L" event="assignment" />') + "</bpmn:userTask>"), "Ask",
     "event 'assignment' is not supported (use one of create, complete)"),
    ("script output parameter", model(service(inner=ext(
        '<camunda:inputOutput><camunda:outputParameter name="o"><camunda:script scriptFormat="js">1</camunda:script>'
        "</camunda:outputParameter></camunda:inputOutput>"))), "Work", "values are not supported"),
    ("list input parameter", model(service(inner=ext(
        '<camunda:inputOutput><camunda:inputParameter name="i"><camunda:list><camunda:value>a</camunda:value>'
        "</camunda:list></camunda:inputParameter></camunda:inputOutput>"))), "Work", "values are not supported"),
    ("field without value", model(service(inner=ext('<camunda:field name="f" />'))), "Work", "exactly one string"),
    ("bad field expression", model(service(inner=ext('<camunda:field name="f"><camunda:expression>${a +}'
                                                     "</camunda:expression></camunda:field>"))),
     "Work", "not a valid expression"),
    ("foreign extension", model(service(inner=ext('<zeebe:taskDefinition type="x" />'))), "Work",
     "only Camunda 7 extensions"),
    ("unknown camunda attribute", model(service(attrs='camunda:class="x.Y" camunda:resultVariable="r"')), "Work",
     "camunda:resultVariable"),
    ("retry list", model(service(inner=ext("<camunda:failedJobRetryTimeCycle>PT1M,PT2M</camunda:failedJobRetryTimeCycle>"))),
     "Work", "failedJobRetryTimeCycle"),
    # --- timers
    ("cron cycle", model(timer_catch("Tick", "timeCycle", "0 0/5 * * * ?")), "Tick", "cron expressions are not supported"),
    ("bad duration", model(timer_catch("Wait", "timeDuration", "PT20X")), "Wait", "not an ISO-8601 duration"),
    ("bad date", model(timer_catch("Wait", "timeDate", "tomorrow")), "Wait", "not an ISO-8601 date-time"),
    ("empty timer", model(timer_catch("Wait", "timeDuration", "")), "Wait", "is empty"),
    ("bad timer expression", model(timer_catch("Wait", "timeDuration", "${interval")), "Wait", "missing '}'"),
    # --- multi-instance
    ("multi-instance without input", model(service(inner="<bpmn:multiInstanceLoopCharacteristics />")), "Work",
     "either camunda:collection or a loop cardinality"),
    ("multi-instance data input", model(service(inner='<bpmn:multiInstanceLoopCharacteristics>'
                                                      "<bpmn:loopDataInputRef>items</bpmn:loopDataInputRef>"
                                                      "</bpmn:multiInstanceLoopCharacteristics>")),
     "Work", "use camunda:collection"),
    ("multi-instance completion", model(service(inner=MI + "<bpmn:completionCondition>${done}</bpmn:completionCondition>"
                                                "</bpmn:multiInstanceLoopCharacteristics>")),
     "Work", "completion conditions"),
    ("element variable without collection", model(service(inner='<bpmn:multiInstanceLoopCharacteristics '
                                                                'camunda:elementVariable="t"><bpmn:loopCardinality>3'
                                                                "</bpmn:loopCardinality></bpmn:multiInstanceLoopCharacteristics>")),
     "Work", "elementVariable needs camunda:collection"),
    ("multi-instance on a gateway", model('<bpmn:parallelGateway id="Fork">' + MI
                                          + "</bpmn:multiInstanceLoopCharacteristics></bpmn:parallelGateway>"),
     "Fork", "not valid BPMN 2.0"),
    # --- flows and gateways
    ("condition after a task", model(service() + '<bpmn:endEvent id="Done" />' + flow("Go", "Work", "Done", "${x}")),
     "Go", "only supported on flows leaving an exclusive gateway"),
    ("implicit split", model(service() + '<bpmn:endEvent id="A" /><bpmn:endEvent id="B" />'
                             + flow("F1", "Work", "A") + flow("F2", "Work", "B")), "Work", "implicit parallel split"),
    ("gateway flow without condition", model(
        '<bpmn:exclusiveGateway id="Decide" /><bpmn:endEvent id="A" /><bpmn:endEvent id="B" />'
        + flow("F1", "Decide", "A", "${x}") + flow("F2", "Decide", "B")), "F2", "needs a condition"),
    ("script condition", model(
        '<bpmn:exclusiveGateway id="Decide" default="F2" /><bpmn:endEvent id="A" /><bpmn:endEvent id="B" />'
        '<bpmn:sequenceFlow id="F1" sourceRef="Decide" targetRef="A"><bpmn:conditionExpression xsi:type="bpmn:tFormalExpression" language="groovy">'
        "x</bpmn:conditionExpression></bpmn:sequenceFlow>" + flow("F2", "Decide", "B")), "F1", "script conditions"),
    ("bad condition", model(
        '<bpmn:exclusiveGateway id="Decide" default="F2" /><bpmn:endEvent id="A" /><bpmn:endEvent id="B" />'
        + flow("F1", "Decide", "A", "${x &amp;&amp;}") + flow("F2", "Decide", "B")), "F1", "not a valid expression"),
    ("event gateway to a task", model(
        '<bpmn:eventBasedGateway id="Wait" />' + service("A") + '<bpmn:receiveTask id="B" messageRef="Reply" />'
        + flow("F1", "Wait", "A") + flow("F2", "Wait", "B")), "F1", "may only lead to intermediate catch events"),
    ("default flow on a task", model(service(attrs='camunda:class="x.Y" default="F1"') + '<bpmn:endEvent id="A" />'
                                     + flow("F1", "Work", "A")), "Work", "default flows on activities"),
    # --- document and process rules
    ("two processes", model("") .replace("</bpmn:definitions>", '<bpmn:process id="dsfdev_other" isExecutable="true" '
                                          'camunda:versionTag="1.0" /></bpmn:definitions>'),
     "dsfdev_other", "exactly one process, found 2"),
    ("process id pattern", model("", process='<bpmn:process id="ping" isExecutable="true" camunda:versionTag="1.0">'),
     "ping", "does not match"),
    ("missing version tag", model("", process='<bpmn:process id="dsfdev_test" isExecutable="true">'),
     "dsfdev_test", "camunda:versionTag is missing"),
    ("not executable", model("", process='<bpmn:process id="dsfdev_test" isExecutable="false" camunda:versionTag="1">'),
     "dsfdev_test", "must be executable"),
    ("reserved id", model('<bpmn:endEvent id="End" />'), "End", "reserved by the engine"),
    ("process listener", model("", process=PROCESS + ext('<camunda:executionListener class="x.L" event="start" />')),
     "dsfdev_test", "camunda:executionListener is not supported on bpmn:process"),
    ("sub-process without end", model('<bpmn:subProcess id="Sub"><bpmn:startEvent id="SubStart" /></bpmn:subProcess>'),
     "Sub", "needs an end event"),
    ("sub-process with message start", model(
        '<bpmn:subProcess id="Sub"><bpmn:startEvent id="SubStart"><bpmn:messageEventDefinition messageRef="M" />'
        '</bpmn:startEvent><bpmn:endEvent id="SubEnd" /></bpmn:subProcess>'),
     "SubStart", "a sub-process starts with a start event without event definition"),
    ("script task in sub-process", model(SUB.format(mi="", inner='<bpmn:scriptTask id="Inner" />', flows="")),
     "Inner", "script tasks"),
]


@pytest.mark.parametrize(("document", "element_id", "reason"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_rejected_with_file_and_element(document: str, element_id: str | None, reason: str) -> None:
    with pytest.raises(ModelError) as info:
        parse_bpmn(document, "plugin/bpe/case.bpmn")
    error = info.value
    assert error.file == "plugin/bpe/case.bpmn"
    assert error.element_id == element_id, str(error)
    assert reason in error.reason, str(error)
    assert str(error).startswith(f"plugin/bpe/case.bpmn: element {element_id!r} (line ")
    assert error.line is not None


def test_malformed_xml_names_file_and_line() -> None:
    with pytest.raises(ModelError) as info:
        parse_bpmn(model(service()).replace("</bpmn:serviceTask>", "</bpmn:serviceTsk>"), "broken.bpmn")
    assert info.value.line == 5
    assert str(info.value).startswith("broken.bpmn (line 5): malformed XML")


def test_invalid_bpmn_names_file_and_line() -> None:
    document = model(service("Twice") + '<bpmn:endEvent id="Twice" />')
    with pytest.raises(ModelError, match="not valid BPMN 2.0") as info:
        parse_bpmn(document, "dup.bpmn")
    assert (info.value.element_id, info.value.line) == ("Twice", 5)


def test_not_bpmn() -> None:
    with pytest.raises(ModelError, match="not valid BPMN 2.0|not a BPMN 2.0 document"):
        parse_bpmn('<?xml version="1.0"?><html />', "page.bpmn")


def test_unresolved_placeholder_names_file_and_line() -> None:
    document = model(service(inner=ext('<camunda:field name="f"><camunda:string>#{organization}</camunda:string>'
                                       "</camunda:field>")))
    with pytest.raises(ModelError) as info:
        parse_bpmn(document, "p.bpmn", placeholders={"version": "1.0"})
    assert info.value.reason == "unresolved placeholder #{organization}"
    assert info.value.line == 5


def test_entities_are_not_resolved() -> None:
    document = model(service()).replace(
        "<bpmn:definitions", '<!DOCTYPE d [<!ENTITY secret SYSTEM "file:///etc/passwd">]>\n<bpmn:definitions'
    ).replace('camunda:class="x.Y"', 'camunda:class="&secret;"')
    with pytest.raises(ModelError):
        parse_bpmn(document, "xxe.bpmn")


def test_accepted_extras() -> None:
    """Diagram, documentation, annotations, lanes, collaboration and harmless Camunda attributes."""
    document = model(
        service(attrs='camunda:class="x.Y" camunda:asyncBefore="true" camunda:jobPriority="5"',
                inner="<bpmn:documentation>does work</bpmn:documentation>")
        + '<bpmn:endEvent id="Done" />' + flow("F0", "Begin", "Work") + flow("F1", "Work", "Done")
        + '<bpmn:textAnnotation id="Note"><bpmn:text>why</bpmn:text></bpmn:textAnnotation>'
        + '<bpmn:association id="A1" sourceRef="Note" targetRef="Work" />',
        process='<bpmn:process id="dsfdev_test" isExecutable="true" camunda:versionTag="1.0" '
                'camunda:historyTimeToLive="180"><bpmn:documentation>a process</bpmn:documentation>'
                '<bpmn:laneSet id="Lanes"><bpmn:lane id="Lane_1" name="site"><bpmn:flowNodeRef>Begin</bpmn:flowNodeRef>'
                "</bpmn:lane></bpmn:laneSet>",
        extra='<bpmn:collaboration id="Collab"><bpmn:participant id="P" processRef="dsfdev_test" /></bpmn:collaboration>',
    )
    loaded = parse_bpmn(document, "extras.bpmn")
    assert loaded.element("Work").binding.async_before
