"""The DSF BPMN subset: what a deployable model may contain, checked element by element.

SpiffWorkflow parses much more than we execute faithfully and silently ignores Camunda
attributes it does not know (python-stack.md §1.1). So before a file reaches it, this
module walks the whole document against an allow list and raises
:class:`~dsf_core.bpe.model.ModelError` — naming file, element id and line — for the first
thing outside the subset. Nothing unknown is ignored; the only tolerated extras are
diagram information, documentation, annotations, lanes, groups and collaboration
participants, plus a few Camunda attributes without runtime meaning here
(``historyTimeToLive``, ``isStartableInTasklist``, ``candidateStarter*``, ``jobPriority``,
``taskPriority`` on the process, ``modelerTemplate*``).

The subset (dsf-core §4.2): message start events; intermediate message catch and throw;
message end events; send, receive, service and user tasks; exclusive, parallel and
event-based gateways; timer intermediate catch events, boundary events (interrupting or
not) and event-based-gateway branches; error boundary events on service tasks, send tasks
and sub-processes; signal throw (intermediate, end) and catch (intermediate, boundary,
start); embedded sub-processes, (parallel or sequential) multi-instance over a
``camunda:collection`` or a cardinality; ``camunda:class`` activities with
``camunda:field`` injections; execution listeners (``start``/``end``) and task listeners by
class; ``camunda:inputOutput`` parameters with text values; ``asyncBefore``/``asyncAfter``/
``exclusive``/``failedJobRetryTimeCycle``; JUEL-subset conditions on exclusive-gateway
flows. DSF rules on top: one process per file, id ``<org>_<name>``, a ``versionTag``, at
least one message start event, ``camunda:class`` on every activity that sends.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import Any, Final, NoReturn

from dsf_core.bpe.expressions import ExpressionError, compile_expression, is_expression
from dsf_core.bpe.extensions import BPMN_NS, CAMUNDA_NS, bpmn, camunda
from dsf_core.bpe.model import ModelError
from dsf_core.bpe.timers import TimerDefinition, TimerError, TimerKind, parse_retry_cycle

__all__ = ["PROCESS_ID_PATTERN", "check_subset"]

PROCESS_ID_PATTERN: Final = re.compile(r"^[-a-zA-Z0-9]+_[-a-zA-Z0-9]+$")

Element = Any

_TOLERATED_PROCESS_ATTRS: Final = frozenset(
    {"versionTag", "historyTimeToLive", "isStartableInTasklist", "candidateStarterGroups",
     "candidateStarterUsers", "jobPriority", "taskPriority"}
)
_JOB_ATTRS: Final = frozenset({"asyncBefore", "asyncAfter", "async", "exclusive", "jobPriority",
                               "modelerTemplate", "modelerTemplateVersion"})
_NODE_EXTENSIONS: Final = frozenset({"executionListener", "inputOutput", "failedJobRetryTimeCycle", "properties"})

_CAMUNDA_HINTS: Final = {
    "expression": "bind a Python activity with camunda:class instead of camunda:expression",
    "delegateExpression": "bind a Python activity with camunda:class instead of camunda:delegateExpression",
    "resultVariable": "camunda:resultVariable belongs to expression implementations, which are not supported",
    "type": "external tasks (camunda:type) are not supported; bind a camunda:class",
    "topic": "external tasks (camunda:topic) are not supported; bind a camunda:class",
    "decisionRef": "DMN decisions are not supported",
    "assignee": "user task assignment is not supported: DSF user tasks are answered through a QuestionnaireResponse",
    "candidateUsers": "user task assignment is not supported: DSF user tasks are answered through a QuestionnaireResponse",
    "candidateGroups": "user task assignment is not supported: DSF user tasks are answered through a QuestionnaireResponse",
    "initiator": "camunda:initiator is not supported",
    "formKey": "start forms are not supported; DSF processes are started by a Task",
}
_ELEMENT_REASONS: Final = {
    "scriptTask": "script tasks are not supported; DSF activities are Python classes bound with camunda:class",
    "businessRuleTask": "business rule tasks (DMN) are not supported",
    "callActivity": "call activities are not supported; start the other process with a message",
    "transaction": "transaction sub-processes are not supported",
    "adHocSubProcess": "ad-hoc sub-processes are not supported",
    "manualTask": "manual tasks are not supported; use a user task",
    "task": "untyped tasks are not supported; use a service task with camunda:class",
    "complexGateway": "complex gateways are not supported",
    "inclusiveGateway": "inclusive gateways are not supported; use exclusive and parallel gateways",
    "dataObject": "data objects are not supported; use process variables",
    "dataObjectReference": "data objects are not supported; use process variables",
    "dataStoreReference": "data stores are not supported",
    "dataStore": "data stores are not supported",
    "dataInputAssociation": "data associations are not supported; use process variables",
    "dataOutputAssociation": "data associations are not supported; use process variables",
    "ioSpecification": "BPMN io specifications are not supported; use camunda:inputOutput",
    "property": "BPMN properties are not supported; use process variables",
    "standardLoopCharacteristics": "loop activities are not supported; draw the loop with an exclusive gateway",
    "compensateEventDefinition": "compensation is not supported",
    "escalationEventDefinition": "escalation events are not supported",
    "escalation": "escalations are not supported",
    "conditionalEventDefinition": "conditional events are not supported",
    "linkEventDefinition": "link events are not supported; draw the sequence flow",
    "cancelEventDefinition": "cancel events are not supported",
    "terminateEventDefinition": "terminate end events are not supported",
    "eventDefinitionRef": "referenced event definitions are not supported",
    "correlationProperty": "BPMN correlation properties are not supported; DSF correlates by business key and correlation key",
    "correlationKey": "BPMN correlation keys are not supported; DSF correlates by business key and correlation key",
    "itemDefinition": "item definitions are not supported",
    "import": "imports are not supported",
    "interface": "service interfaces are not supported",
    "loopDataInputRef": "use camunda:collection and camunda:elementVariable for multi-instance input",
    "inputDataItem": "use camunda:collection and camunda:elementVariable for multi-instance input",
    "loopDataOutputRef": "multi-instance output collections are not supported",
    "outputDataItem": "multi-instance output collections are not supported",
    "completionCondition": "multi-instance completion conditions are not supported",
    "complexBehaviorDefinition": "multi-instance complex behaviour is not supported",
}
_EXTENSION_REASONS: Final = {
    "connector": "camunda connectors are not supported; bind a camunda:class",
    "formData": "generated forms are not supported; a DSF user task names a Questionnaire in camunda:formKey",
    "in": "camunda:in belongs to call activities and signals with variables, which are not supported",
    "out": "camunda:out belongs to call activities, which are not supported",
    "script": "scripts are not supported",
    "errorEventDefinition": "camunda:errorEventDefinition (external task errors) is not supported",
}
_EVENT_DEFINITIONS: Final = ("messageEventDefinition", "timerEventDefinition", "signalEventDefinition",
                             "errorEventDefinition")
_ACTIVITIES: Final = frozenset({"serviceTask", "sendTask", "receiveTask", "userTask", "subProcess"})
# SpiffWorkflow names its own task specs like this, in the namespace of element ids.
_RESERVED_IDS: Final = frozenset({"Start", "End", "StartEventSplit", "StartEventJoin"})
_RESERVED_SUFFIXES: Final = (".EndJoin", ".BoundaryEventSplit", ".BoundaryEventJoin", " [child]")
_NODE_CHILDREN: Final = frozenset({"incoming", "outgoing", "documentation", "extensionElements"})


def check_subset(root: Element, file: str) -> None:
    """Raise :class:`ModelError` for the first construct of ``root`` outside the DSF subset."""
    _Checker(root, file).check()


class _Checker:
    def __init__(self, root: Element, file: str) -> None:
        self.root = root
        self.file = file
        self.messages: dict[str, str] = {}
        self.signals: dict[str, str] = {}
        self.errors: set[str] = set()

    def fail(self, node: Element, reason: str) -> NoReturn:
        owner = node
        while owner is not None and not owner.get("id"):
            owner = owner.getparent()
        raise ModelError(self.file, reason, element_id=owner.get("id") if owner is not None else None,
                         line=node.sourceline)

    # ------------------------------------------------------------------ document

    def check(self) -> None:
        root = self.root
        if root.tag != bpmn("definitions"):
            self.fail(root, f"not a BPMN 2.0 document (root element {_short(root.tag)})")
        processes = root.findall(bpmn("process"))
        if len(processes) != 1:
            self.fail(processes[1] if processes else root,
                      f"a DSF BPMN file holds exactly one process, found {len(processes)}")
        for child in _elements(root):
            local = _local(child, BPMN_NS)
            if child.tag == "{http://www.omg.org/spec/BPMN/20100524/DI}BPMNDiagram":
                continue
            if local in ("process", "collaboration", "category", "documentation", "extensionElements"):
                continue
            if local == "message":
                self.messages[child.get("id", "")] = self._named(child, "message")
            elif local == "signal":
                self.signals[child.get("id", "")] = self._named(child, "signal")
            elif local == "error":
                self.errors.add(child.get("id", ""))
            else:
                self._reject(child)
        self._check_process(processes[0])

    def _named(self, node: Element, kind: str) -> str:
        name = (node.get("name") or "").strip()
        if not name:
            self.fail(node, f"the {kind} has no name")
        if is_expression(name):
            self.fail(node, f"{kind} names must be literal, not expressions")
        return name

    def _check_process(self, process: Element) -> None:
        pid = process.get("id", "")
        if not PROCESS_ID_PATTERN.match(pid):
            self.fail(process, f"process id {pid!r} does not match {PROCESS_ID_PATTERN.pattern} (<organization>_<name>)")
        if process.get("isExecutable") != "true":
            self.fail(process, 'the process must be executable (isExecutable="true")')
        if not (process.get(camunda("versionTag")) or "").strip():
            self.fail(process, "camunda:versionTag is missing; DSF needs the process version (e.g. #{version})")
        self._camunda_attributes(process, _TOLERATED_PROCESS_ATTRS)
        self._extensions(process, {"properties"})
        for node in process.iter():
            element_id = node.get("id") if isinstance(node.tag, str) else None
            if element_id and (element_id in _RESERVED_IDS or element_id.endswith(_RESERVED_SUFFIXES)):
                self.fail(node, f"the element id {element_id!r} is reserved by the engine (SpiffWorkflow); rename it")
        self._container(process, top=True)
        starts = [s for s in process.findall(bpmn("startEvent")) if s.find(bpmn("messageEventDefinition")) is not None]
        if not starts:
            self.fail(process, "a DSF process needs a message start event (it is started by a Task)")

    # ------------------------------------------------------------------ containers

    def _container(self, container: Element, *, top: bool) -> None:
        nodes = {c.get("id"): c for c in _elements(container) if c.get("id")}
        flows = [c for c in _elements(container) if c.tag == bpmn("sequenceFlow")]
        outgoing: dict[str, list[Element]] = {}
        for flow in flows:
            outgoing.setdefault(flow.get("sourceRef", ""), []).append(flow)
        skip = {"laneSet", "textAnnotation", "association", "group", "documentation", "extensionElements"}
        if not top:  # the sub-process element's own children are checked with the element
            skip |= {"incoming", "outgoing", "multiInstanceLoopCharacteristics"}
        for child in _elements(container):
            local = _local(child, BPMN_NS)
            if local is None:
                self.fail(child, f"{_short(child.tag)} is not a BPMN element")
            if local in skip:
                continue
            if local == "sequenceFlow":
                self._flow(child, nodes)
                continue
            check = _NODE_CHECKS.get(local)
            if check is None:
                self._reject(child)
            self._node_common(child, local, outgoing.get(child.get("id", ""), []))
            check(self, child, top, nodes, outgoing)
        if not top:
            starts = container.findall(bpmn("startEvent"))
            if len(starts) != 1:
                self.fail(container, f"a sub-process needs exactly one start event, found {len(starts)}")
            if container.find(bpmn("endEvent")) is None:
                self.fail(container, "a sub-process needs an end event")

    def _node_common(self, node: Element, local: str, outgoing: list[Element]) -> None:
        if len(outgoing) > 1 and not local.endswith("Gateway"):
            self.fail(node, "several outgoing sequence flows without a gateway (an implicit parallel split) "
                            "are not supported; draw a parallel gateway")
        if node.get("isForCompensation") == "true":
            self.fail(node, "compensation is not supported")
        for attr in ("startQuantity", "completionQuantity"):
            if node.get(attr) not in (None, "1"):
                self.fail(node, f"{attr} other than 1 is not supported")
        if local in _ACTIVITIES and node.get("default"):
            self.fail(node, "default flows on activities (conditional flows) are not supported; use an exclusive gateway")
        for child in _elements(node):
            if not child.tag.startswith(f"{{{BPMN_NS}}}"):
                self.fail(child, f"{_short(child.tag)} is not allowed here")
            name = _local(child, BPMN_NS)
            if name in _ELEMENT_REASONS:
                self.fail(child, _ELEMENT_REASONS[name])
        mi = node.find(bpmn("multiInstanceLoopCharacteristics"))
        if mi is not None:
            if local not in _ACTIVITIES:
                self.fail(mi, f"multi-instance is not supported on {_short(node.tag)}")
            self._multi_instance(mi)

    def _flow(self, flow: Element, nodes: dict[str, Element]) -> None:
        source, target = nodes.get(flow.get("sourceRef", "")), nodes.get(flow.get("targetRef", ""))
        if source is None or target is None:
            self.fail(flow, "the sequence flow connects an element outside its process or sub-process")
        self._camunda_attributes(flow, frozenset())
        self._extensions(flow, {"properties"})
        condition = flow.find(bpmn("conditionExpression"))
        if condition is None:
            return
        if source.tag != bpmn("exclusiveGateway"):
            self.fail(flow, "conditions are only supported on flows leaving an exclusive gateway")
        if condition.get("language") or condition.get(camunda("resource")):
            self.fail(flow, "script conditions are not supported; write a ${...} expression")
        self._expression(flow, condition.text, "condition", required=True)

    def _multi_instance(self, mi: Element) -> None:
        self._camunda_attributes(mi, frozenset({"collection", "elementVariable", "asyncBefore", "asyncAfter",
                                               "async", "exclusive"}))
        self._extensions(mi, {"failedJobRetryTimeCycle"})
        for child in _elements(mi):
            name = _local(child, BPMN_NS) or ""
            if name not in ("loopCardinality", "extensionElements", "documentation"):
                self.fail(child, _ELEMENT_REASONS.get(name, f"{_short(child.tag)} is not supported in multi-instance"))
        collection = mi.get(camunda("collection"))
        cardinality = mi.find(bpmn("loopCardinality"))
        if (collection is None) == (cardinality is None):
            self.fail(mi, "a multi-instance activity needs either camunda:collection or a loop cardinality")
        if collection is not None:
            if is_expression(collection):
                self._expression(mi, collection, "collection", required=True)
            elif not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", collection.strip()):
                self.fail(mi, f"camunda:collection {collection!r} is neither ${{...}} nor a variable name")
        elif mi.get(camunda("elementVariable")):
            self.fail(mi, "camunda:elementVariable needs camunda:collection")
        if cardinality is not None:
            text = (cardinality.text or "").strip()
            if not text.isdigit():
                self._expression(mi, text, "loop cardinality", required=True)

    # ------------------------------------------------------------------ flow nodes

    def _event_definitions(self, node: Element, allowed: tuple[str, ...]) -> list[Element]:
        found = [c for c in _elements(node) if _local(c, BPMN_NS) in _EVENT_DEFINITIONS]
        if len(found) > 1:
            self.fail(node, "events with several event definitions (multiple/parallel multiple) are not supported")
        for definition in found:
            if _local(definition, BPMN_NS) not in allowed:
                self.fail(definition, f"{_short(definition.tag)} is not supported on {_short(node.tag)}")
        return found

    def _start(self, node: Element, top: bool, nodes: dict[str, Element], outgoing: Any) -> None:
        self._camunda_attributes(node, _JOB_ATTRS)
        self._extensions(node, {"executionListener", "failedJobRetryTimeCycle", "properties"})
        defs = self._event_definitions(node, ("messageEventDefinition", "signalEventDefinition", "timerEventDefinition"))
        if not top:
            if defs:
                self.fail(node, "a sub-process starts with a start event without event definition")
            return
        if not defs:
            self.fail(node, "a DSF process is started by messages: a none start event is only allowed in a sub-process")
        kind = _local(defs[0], BPMN_NS)
        if kind == "timerEventDefinition":
            self.fail(defs[0], "timer start events are not supported; start with a message and wait with a timer")
        self._definition(defs[0], role="catch")

    def _end(self, node: Element, top: bool, nodes: dict[str, Element], outgoing: Any) -> None:
        self._camunda_attributes(node, _JOB_ATTRS)
        self._extensions(node, _NODE_EXTENSIONS)
        defs = self._event_definitions(node, ("messageEventDefinition", "signalEventDefinition"))
        if defs:
            self._definition(defs[0], role="throw")

    def _catch(self, node: Element, top: bool, nodes: dict[str, Element], outgoing: Any) -> None:
        self._camunda_attributes(node, _JOB_ATTRS)
        self._extensions(node, _NODE_EXTENSIONS)
        defs = self._event_definitions(node, ("messageEventDefinition", "timerEventDefinition", "signalEventDefinition"))
        if not defs:
            self.fail(node, "an intermediate catch event needs a message, timer or signal definition")
        self._definition(defs[0], role="catch")

    def _throw(self, node: Element, top: bool, nodes: dict[str, Element], outgoing: Any) -> None:
        self._camunda_attributes(node, _JOB_ATTRS)
        self._extensions(node, _NODE_EXTENSIONS)
        defs = self._event_definitions(node, ("messageEventDefinition", "signalEventDefinition"))
        if not defs:
            self.fail(node, "intermediate throw events without a message or signal definition are not supported")
        self._definition(defs[0], role="throw")

    def _boundary(self, node: Element, top: bool, nodes: dict[str, Element], outgoing: Any) -> None:
        self._camunda_attributes(node, _JOB_ATTRS)
        self._extensions(node, _NODE_EXTENSIONS)
        defs = self._event_definitions(node, ("timerEventDefinition", "errorEventDefinition", "signalEventDefinition"))
        if not defs:
            self.fail(node, "a boundary event needs a timer, error or signal definition")
        attached = nodes.get(node.get("attachedToRef", ""))
        if attached is None or _local(attached, BPMN_NS) not in _ACTIVITIES:
            self.fail(node, "a boundary event must be attached to a task or sub-process of the same process")
        if _local(defs[0], BPMN_NS) == "errorEventDefinition":
            if _local(attached, BPMN_NS) not in ("serviceTask", "sendTask", "subProcess"):
                self.fail(node, "error boundary events are supported on service tasks, send tasks and sub-processes")
            if node.get("cancelActivity") == "false":
                self.fail(node, "an error boundary event is always interrupting")
        self._definition(defs[0], role="catch")

    def _service(self, node: Element, top: bool, nodes: dict[str, Element], outgoing: Any) -> None:
        self._activity(node, _JOB_ATTRS | {"class"}, _NODE_EXTENSIONS | {"field"})
        if not node.get(camunda("class")):
            self.fail(node, f"a {_short(node.tag)[5:]} needs camunda:class (the activity to run)")

    def _send(self, node: Element, top: bool, nodes: dict[str, Element], outgoing: Any) -> None:
        self._service(node, top, nodes, outgoing)
        if node.get("messageRef") is not None:
            self._message_ref(node)

    def _receive(self, node: Element, top: bool, nodes: dict[str, Element], outgoing: Any) -> None:
        self._activity(node, _JOB_ATTRS, _NODE_EXTENSIONS)
        if node.get("instantiate") == "true":
            self.fail(node, "instantiating receive tasks are not supported; use a message start event")
        if not node.get("messageRef"):
            self.fail(node, "a receive task needs a messageRef")
        self._message_ref(node)

    def _user(self, node: Element, top: bool, nodes: dict[str, Element], outgoing: Any) -> None:
        self._activity(node, _JOB_ATTRS | {"formKey"}, _NODE_EXTENSIONS | {"taskListener"})
        if not (node.get(camunda("formKey")) or "").strip():
            self.fail(node, "a DSF user task needs camunda:formKey (the Questionnaire URL)")

    def _sub_process(self, node: Element, top: bool, nodes: dict[str, Element], outgoing: Any) -> None:
        if node.get("triggeredByEvent") == "true":
            self.fail(node, "event sub-processes are not supported")
        self._activity(node, _JOB_ATTRS, _NODE_EXTENSIONS)
        self._container(node, top=False)

    def _activity(self, node: Element, attrs: frozenset[str], extensions: Iterable[str]) -> None:
        self._camunda_attributes(node, attrs)
        self._extensions(node, extensions)

    def _exclusive(self, node: Element, top: bool, nodes: dict[str, Element], outgoing: dict[str, Any]) -> None:
        self._gateway(node)
        flows = outgoing.get(node.get("id", ""), [])
        default = node.get("default")
        if default and default not in {f.get("id") for f in flows}:
            self.fail(node, f"the default flow {default!r} does not leave this gateway")
        if len(flows) > 1:
            for flow in flows:
                if flow.get("id") != default and flow.find(bpmn("conditionExpression")) is None:
                    self.fail(flow, "every flow leaving an exclusive gateway, except the default, needs a condition")

    def _parallel(self, node: Element, top: bool, nodes: dict[str, Element], outgoing: Any) -> None:
        self._gateway(node)

    def _event_gateway(self, node: Element, top: bool, nodes: dict[str, Element], outgoing: dict[str, Any]) -> None:
        self._gateway(node)
        if node.get("instantiate") == "true" or node.get("eventGatewayType") == "Parallel":
            self.fail(node, "instantiating or parallel event-based gateways are not supported")
        flows = outgoing.get(node.get("id", ""), [])
        if len(flows) < 2:
            self.fail(node, "an event-based gateway needs at least two outgoing flows")
        for flow in flows:
            target = nodes.get(flow.get("targetRef", ""))
            local = _local(target, BPMN_NS) if target is not None else ""
            if local not in ("intermediateCatchEvent", "receiveTask"):
                self.fail(flow, "an event-based gateway may only lead to intermediate catch events and receive tasks")

    def _gateway(self, node: Element) -> None:
        self._camunda_attributes(node, _JOB_ATTRS)
        self._extensions(node, {"executionListener", "failedJobRetryTimeCycle", "properties"})

    # ------------------------------------------------------------------ event definitions

    def _definition(self, definition: Element, *, role: str) -> None:
        kind = _local(definition, BPMN_NS)
        if kind == "messageEventDefinition":
            if role == "throw":
                self._camunda_attributes(definition, frozenset({"class"}))
                self._extensions(definition, {"field"})
                if not definition.get(camunda("class")):
                    self.fail(definition, "a message throw or end event needs camunda:class (the sender) on its "
                                          "message event definition")
                if definition.get("messageRef") is not None:
                    self._message_ref(definition)
            else:
                self._camunda_attributes(definition, frozenset())
                self._extensions(definition, ())
                if not definition.get("messageRef"):
                    self.fail(definition, "a message catch or start event needs a messageRef")
                self._message_ref(definition)
        elif kind == "signalEventDefinition":
            self._camunda_attributes(definition, frozenset())
            self._extensions(definition, ())
            if definition.get("signalRef") not in self.signals:
                self.fail(definition, "the signal event definition needs a signalRef to a bpmn:signal")
        elif kind == "errorEventDefinition":
            self._camunda_attributes(definition, frozenset({"errorCodeVariable", "errorMessageVariable"}))
            self._extensions(definition, ())
            ref = definition.get("errorRef")
            if ref is not None and ref not in self.errors:
                self.fail(definition, f"errorRef {ref!r} names no bpmn:error")
        elif kind == "timerEventDefinition":
            self._camunda_attributes(definition, frozenset())
            self._extensions(definition, ())
            self._timer(definition)

    def _message_ref(self, node: Element) -> None:
        if node.get("messageRef") not in self.messages:
            self.fail(node, f"messageRef {node.get('messageRef')!r} names no bpmn:message")

    def _timer(self, definition: Element) -> None:
        values = [c for c in _elements(definition) if _local(c, BPMN_NS) in ("timeDate", "timeDuration", "timeCycle")]
        if len(values) != 1:
            self.fail(definition, "a timer needs exactly one of timeDate, timeDuration, timeCycle")
        text = (values[0].text or "").strip()
        if not text:
            self.fail(definition, f"the {_local(values[0], BPMN_NS)} is empty")
        try:
            TimerDefinition(TimerKind(_local(values[0], BPMN_NS)), text).check()
        except (TimerError, ExpressionError) as exc:
            self.fail(definition, str(exc))

    # ------------------------------------------------------------------ camunda extensions

    def _camunda_attributes(self, node: Element, allowed: frozenset[str] | set[str]) -> None:
        for attr in node.attrib:
            local = _local_attr(attr, CAMUNDA_NS)
            if local is not None and local not in allowed:
                hint = _CAMUNDA_HINTS.get(local)
                self.fail(node, hint or f"camunda:{local} is not supported on {_short(node.tag)}")

    def _extensions(self, node: Element, allowed: Iterable[str]) -> None:
        permitted = set(allowed)
        for ext in node.findall(bpmn("extensionElements")):
            for item in _elements(ext):
                local = _local(item, CAMUNDA_NS)
                if local is None:
                    self.fail(item, f"extension {_short(item.tag)} is not supported (only Camunda 7 extensions are)")
                if local not in permitted:
                    self.fail(item, _EXTENSION_REASONS.get(local, f"camunda:{local} is not supported on {_short(node.tag)}"))
                _EXTENSION_CHECKS[local](self, item)

    def _check_field(self, item: Element) -> None:
        if not item.get("name"):
            self.fail(item, "camunda:field needs a name")
        sources = [item.get("stringValue") is not None, item.get("expression") is not None,
                   item.find(camunda("string")) is not None, item.find(camunda("expression")) is not None]
        if sum(sources) != 1:
            self.fail(item, f"camunda:field {item.get('name')!r} needs exactly one string or expression value")
        for child in _elements(item):
            if child.tag not in (camunda("string"), camunda("expression")):
                self.fail(child, f"{_short(child.tag)} is not supported in camunda:field")
        expression = item.get("expression") or (item.findtext(camunda("expression")) if sources[3] else None)
        if expression is not None:
            self._expression(item, expression, f"field {item.get('name')!r}", required=True)

    def _check_listener(self, item: Element, events: tuple[str, ...]) -> None:
        kind = _local(item, CAMUNDA_NS)
        if item.get("expression") is not None or item.get("delegateExpression") is not None:
            self.fail(item, f"camunda:{kind} needs a class; expressions are not supported")
        if not item.get("class"):
            self.fail(item, f"camunda:{kind} needs a class")
        if item.get("event") not in events:
            self.fail(item, f"camunda:{kind} event {item.get('event')!r} is not supported (use one of {', '.join(events)})")
        for child in _elements(item):
            if child.tag != camunda("field"):
                self.fail(child, f"{_short(child.tag)} is not supported in camunda:{kind}")
            self._check_field(child)

    def _check_input_output(self, item: Element) -> None:
        for param in _elements(item):
            if param.tag not in (camunda("inputParameter"), camunda("outputParameter")):
                self.fail(param, f"{_short(param.tag)} is not supported in camunda:inputOutput")
            if not param.get("name"):
                self.fail(param, f"{_short(param.tag)} needs a name")
            for child in _elements(param):
                self.fail(child, f"{_short(child.tag)} values are not supported; write text or ${{...}}")
            self._expression(param, param.text, f"parameter {param.get('name')!r}", required=False)

    def _check_retry(self, item: Element) -> None:
        text = (item.text or "").strip()
        if not text or is_expression(text):
            return
        try:
            parse_retry_cycle(text)
        except TimerError as exc:
            self.fail(item, f"camunda:failedJobRetryTimeCycle: {exc}")

    def _check_properties(self, item: Element) -> None:
        for prop in _elements(item):
            if prop.tag != camunda("property") or not prop.get("name"):
                self.fail(prop, "camunda:properties holds camunda:property elements with a name")

    def _expression(self, node: Element, text: str | None, what: str, *, required: bool) -> None:
        if text is None or not text.strip():
            if required:
                self.fail(node, f"the {what} is empty")
            return
        try:
            compile_expression(text.strip())
        except ExpressionError as exc:
            self.fail(node, f"the {what} is not a valid expression: {exc}")

    def _reject(self, node: Element) -> NoReturn:
        local = _local(node, BPMN_NS) or ""
        self.fail(node, _ELEMENT_REASONS.get(local, f"{_short(node.tag)} is not part of the DSF BPMN subset"))


_Check = Callable[[_Checker, Element, bool, dict[str, Element], Any], None]

_NODE_CHECKS: Final[dict[str, _Check]] = {
    "startEvent": _Checker._start,
    "endEvent": _Checker._end,
    "intermediateCatchEvent": _Checker._catch,
    "intermediateThrowEvent": _Checker._throw,
    "boundaryEvent": _Checker._boundary,
    "serviceTask": _Checker._service,
    "sendTask": _Checker._send,
    "receiveTask": _Checker._receive,
    "userTask": _Checker._user,
    "subProcess": _Checker._sub_process,
    "exclusiveGateway": _Checker._exclusive,
    "parallelGateway": _Checker._parallel,
    "eventBasedGateway": _Checker._event_gateway,
}

_EXTENSION_CHECKS: Final[dict[str, Callable[[_Checker, Element], None]]] = {
    "field": _Checker._check_field,
    "executionListener": lambda c, e: c._check_listener(e, ("start", "end")),
    "taskListener": lambda c, e: c._check_listener(e, ("create", "complete")),
    "inputOutput": _Checker._check_input_output,
    "failedJobRetryTimeCycle": _Checker._check_retry,
    "properties": _Checker._check_properties,
}


def _elements(node: Element) -> list[Element]:
    """Child elements, without comments and processing instructions."""
    return [c for c in node if isinstance(c.tag, str)]


def _local(node: Element, namespace: str) -> str | None:
    prefix = f"{{{namespace}}}"
    tag: str = node.tag
    return tag[len(prefix):] if tag.startswith(prefix) else None


def _local_attr(attr: str, namespace: str) -> str | None:
    prefix = f"{{{namespace}}}"
    return attr[len(prefix):] if attr.startswith(prefix) else None


def _short(tag: str) -> str:
    for prefix, ns in (("bpmn", BPMN_NS), ("camunda", CAMUNDA_NS)):
        if tag.startswith(f"{{{ns}}}"):
            return f"{prefix}:{tag[len(ns) + 2:]}"
    return tag
