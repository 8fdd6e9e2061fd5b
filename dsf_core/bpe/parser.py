"""Loading BPMN files drawn for the Java DSF into SpiffWorkflow specs.

:func:`load_bpmn` (a file) and :func:`parse_bpmn` (bytes) run four steps, each failing
with a :class:`~dsf_core.bpe.model.ModelError` that names the file and, where there is
one, the element id and line:

1. placeholders ``#{name}`` are replaced (deployment passes ``version``, ``date``,
   ``organization``, ``env.X``…); one left unresolved is an error;
2. the XML is parsed (no entities, no network) and validated against the BPMN 2.0 XSD
   that ships with SpiffWorkflow (duplicate ids, misplaced elements);
3. :func:`dsf_core.bpe.subset.check_subset` rejects every construct outside the DSF subset;
4. :class:`DsfBpmnParser` — SpiffWorkflow's ``BpmnParser`` with DSF node parsers — builds
   the specs of :mod:`dsf_core.bpe.specs`, each with its
   :class:`~dsf_core.bpe.bindings.Binding` read from the Camunda extensions.

How elements map onto SpiffWorkflow (see also each class in :mod:`dsf_core.bpe.specs`):
events and gateways keep SpiffWorkflow's structure (boundary events become a
``BoundaryEventSplit``/``BoundaryEventJoin`` pair around the activity, an event-based
gateway owns its branches' event definitions); an embedded sub-process becomes a
``SubWorkflowTask`` with its own process spec in ``subprocess_specs`` keyed by its id; a
multi-instance activity becomes a multi-instance task named after the element that runs
the element's own spec (renamed ``"<id> [child]"``) once per item.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any, Final
from xml.sax.saxutils import escape as xml_escape

from lxml import etree
from SpiffWorkflow.bpmn.parser.BpmnParser import BpmnParser, BpmnValidator  # type: ignore[import-untyped]
from SpiffWorkflow.bpmn.parser.event_parsers import (  # type: ignore[import-untyped]
    MESSAGE_EVENT_XPATH,
    SIGNAL_EVENT_XPATH,
    BoundaryEventParser,
    EndEventParser,
    EventBasedGatewayParser,
    IntermediateCatchEventParser,
    IntermediateThrowEventParser,
    ReceiveTaskParser,
    SendTaskParser,
    StartEventParser,
)
from SpiffWorkflow.bpmn.parser.node_parser import DEFAULT_NSMAP  # type: ignore[import-untyped]
from SpiffWorkflow.bpmn.parser.task_parsers import (  # type: ignore[import-untyped]
    ConditionalGatewayParser,
    GatewayParser,
    SubWorkflowParser,
)
from SpiffWorkflow.bpmn.parser.TaskParser import TaskParser  # type: ignore[import-untyped]
from SpiffWorkflow.bpmn.parser.util import full_tag  # type: ignore[import-untyped]
from SpiffWorkflow.bpmn.parser.ValidationException import ValidationException  # type: ignore[import-untyped]
from SpiffWorkflow.bpmn.specs.data_spec import TaskDataReference  # type: ignore[import-untyped]
from SpiffWorkflow.bpmn.specs.mixins.multiinstance_task import MultiInstanceTask  # type: ignore[import-untyped]

from dsf_core.bpe.bindings import Binding
from dsf_core.bpe.events import (
    DsfCycleTimerEventDefinition,
    DsfErrorEventDefinition,
    DsfMessageEventDefinition,
    DsfSignalEventDefinition,
    DsfTimerEventDefinition,
)
from dsf_core.bpe.expressions import is_expression
from dsf_core.bpe.extensions import BPMN_NS, CAMUNDA_NS, bpmn, camunda, read_binding, read_fields, read_properties
from dsf_core.bpe.model import ModelError, ProcessModel
from dsf_core.bpe.specs import (
    CollectionExpression,
    DsfBoundaryEvent,
    DsfEndEvent,
    DsfEventBasedGateway,
    DsfExclusiveGateway,
    DsfIntermediateCatchEvent,
    DsfIntermediateThrowEvent,
    DsfParallelGateway,
    DsfParallelMultiInstanceTask,
    DsfReceiveTask,
    DsfSendTask,
    DsfSequentialMultiInstanceTask,
    DsfServiceTask,
    DsfStartEvent,
    DsfSubProcess,
    DsfUserTask,
)
from dsf_core.bpe.subset import check_subset
from dsf_core.bpe.timers import TimerKind

__all__ = ["DsfBpmnParser", "load_bpmn", "parse_bpmn", "replace_placeholders"]

NSMAP: Final = {**DEFAULT_NSMAP, "camunda": CAMUNDA_NS}
_PLACEHOLDER: Final = re.compile(rb"#\{([^}]*)\}")

Element = Any


# ----------------------------------------------------------------------------- node parsers


class _DsfNodeParser:
    """Mixed into SpiffWorkflow's node parsers: adds the binding, DSF event definitions and
    Camunda-style multi-instance. (SpiffWorkflow's parser API is untyped; so is this.)"""

    # provided by SpiffWorkflow's TaskParser
    node: Element
    process_parser: Any
    spec: Any
    task: Any
    _copy_task_attrs: Any

    @property
    def bpmn_attributes(self) -> dict[str, Any]:
        attributes: dict[str, Any] = super().bpmn_attributes  # type: ignore[misc]
        attributes["binding"] = self.dsf_binding()
        return attributes

    def dsf_binding(self) -> Binding:
        return read_binding(self.node)

    def parse_extensions(self, node: Element = None) -> dict[str, str]:
        return read_properties(self.node)

    def parse_condition(self, sequence_flow: Element) -> str | None:
        condition = sequence_flow.find(bpmn("conditionExpression"))
        return condition.text.strip() if condition is not None and condition.text else None

    def _add_multiinstance_task(self, loop_characteristics: Element) -> None:
        # Camunda's camunda:collection/camunda:elementVariable instead of BPMN's
        # loopDataInputRef/inputDataItem (which SpiffWorkflow's own parsers expect).
        collection = loop_characteristics.get(camunda("collection"))
        element_variable = loop_characteristics.get(camunda("elementVariable"))
        cardinality_node = loop_characteristics.find(bpmn("loopCardinality"))
        cardinality = None
        if cardinality_node is not None:
            text = (cardinality_node.text or "").strip()
            cardinality = f"${{{text}}}" if text.isdigit() else text
        data_input = None
        if collection is not None:
            text = collection.strip()
            data_input = CollectionExpression(text if is_expression(text) else f"${{{text}}}")
        sequential = loop_characteristics.get("isSequential") == "true"
        spec_class = DsfSequentialMultiInstanceTask if sequential else DsfParallelMultiInstanceTask
        original = self.spec.task_specs.pop(self.task.name)
        self.task = spec_class(
            self.spec,
            original.name,
            task_spec="",
            cardinality=cardinality,
            data_input=data_input,
            input_item=TaskDataReference(element_variable) if element_variable else None,
            binding=read_binding(loop_characteristics),
            description="Sequential MultiInstance" if sequential else "Parallel MultiInstance",
        )
        self._copy_task_attrs(original, loop_characteristics)

    # -- event definitions (used by SpiffWorkflow's EventDefinitionParser) ----------

    def _message_name(self, definition: Element) -> str | None:
        ref = definition.get("messageRef")
        if ref:
            name: str | None = self.process_parser.parser.messages.get(ref)
            return name
        # DSF senders often leave messageRef out and name the message in a field.
        field = next((f for f in read_fields(definition) if f.name == "messageName" and not f.is_expression), None)
        return field.value if field is not None else None

    def parse_message_event(self, message_event: Element) -> DsfMessageEventDefinition:
        return DsfMessageEventDefinition(self._message_name(message_event))

    def parse_signal_event(self, signal_event: Element) -> DsfSignalEventDefinition:
        return DsfSignalEventDefinition(self.process_parser.parser.signals[signal_event.get("signalRef")])

    def parse_error_event(self, error_event: Element) -> DsfErrorEventDefinition:
        ref = error_event.get("errorRef")
        error = self.process_parser.parser.errors.get(ref) if ref else None
        return DsfErrorEventDefinition(
            (error or {}).get("name") or "error",
            (error or {}).get("error_code"),
            code_variable=error_event.get(camunda("errorCodeVariable")),
            message_variable=error_event.get(camunda("errorMessageVariable")),
        )

    def parse_timer_event(self, event: Element) -> DsfTimerEventDefinition | DsfCycleTimerEventDefinition:
        value = next(c for c in event if isinstance(c.tag, str) and c.tag.startswith(f"{{{BPMN_NS}}}time"))
        kind = TimerKind(value.tag[len(BPMN_NS) + 2:])
        text = (value.text or "").strip()
        name = self.node.get("id")
        repeating = self.node.tag == bpmn("boundaryEvent") and self.node.get("cancelActivity") == "false"
        if kind is TimerKind.CYCLE and repeating:
            return DsfCycleTimerEventDefinition(name, text)
        return DsfTimerEventDefinition(name, text, kind.value)


class _ThrowParser(_DsfNodeParser):
    """Message throw and end events: the sender class and fields sit on the event definition."""

    def dsf_binding(self) -> Binding:
        definition = self.node.find(bpmn("messageEventDefinition"))
        return read_binding(self.node, activity=definition) if definition is not None else read_binding(self.node)


class DsfStartEventParser(_DsfNodeParser, StartEventParser):  # type: ignore[misc]
    pass


class DsfEndEventParser(_ThrowParser, EndEventParser):  # type: ignore[misc]
    def create_task(self) -> Any:
        # SpiffWorkflow's end event parser does not look for signal definitions and would
        # turn a signal end event into a none end event.
        definition = self.get_event_definition([MESSAGE_EVENT_XPATH, SIGNAL_EVENT_XPATH])
        task = self._create_task(definition)
        task.connect(self.spec.end)
        return task


class DsfIntermediateCatchEventParser(_DsfNodeParser, IntermediateCatchEventParser):  # type: ignore[misc]
    pass


class DsfIntermediateThrowEventParser(_ThrowParser, IntermediateThrowEventParser):  # type: ignore[misc]
    pass


class DsfBoundaryEventParser(_DsfNodeParser, BoundaryEventParser):  # type: ignore[misc]
    pass


class DsfSendTaskParser(_DsfNodeParser, SendTaskParser):  # type: ignore[misc]
    def create_task(self) -> Any:
        return self._create_task(self.parse_message_event(self.node))


class DsfReceiveTaskParser(_DsfNodeParser, ReceiveTaskParser):  # type: ignore[misc]
    def create_task(self) -> Any:
        return self._create_task(self.parse_message_event(self.node))


class DsfEventBasedGatewayParser(_DsfNodeParser, EventBasedGatewayParser):  # type: ignore[misc]
    pass


class DsfTaskParser(_DsfNodeParser, TaskParser):  # type: ignore[misc]
    pass


class DsfUserTaskParser(_DsfNodeParser, TaskParser):  # type: ignore[misc]
    def create_task(self) -> Any:
        return self.spec_class(self.spec, self.bpmn_id, form_key=self.node.get(camunda("formKey")),
                               **self.bpmn_attributes)


class DsfGatewayParser(_DsfNodeParser, GatewayParser):  # type: ignore[misc]
    pass


class DsfConditionalGatewayParser(_DsfNodeParser, ConditionalGatewayParser):  # type: ignore[misc]
    pass


class DsfSubProcessParser(_DsfNodeParser, SubWorkflowParser):  # type: ignore[misc]
    pass


class DsfBpmnParser(BpmnParser):  # type: ignore[misc]
    """SpiffWorkflow's parser producing DSF specs. Use :func:`load_bpmn`, which checks the
    subset first: this class alone would accept whatever SpiffWorkflow can parse."""

    OVERRIDE_PARSER_CLASSES: Final = {
        full_tag("startEvent"): (DsfStartEventParser, DsfStartEvent),
        full_tag("endEvent"): (DsfEndEventParser, DsfEndEvent),
        full_tag("intermediateCatchEvent"): (DsfIntermediateCatchEventParser, DsfIntermediateCatchEvent),
        full_tag("intermediateThrowEvent"): (DsfIntermediateThrowEventParser, DsfIntermediateThrowEvent),
        full_tag("boundaryEvent"): (DsfBoundaryEventParser, DsfBoundaryEvent),
        full_tag("serviceTask"): (DsfTaskParser, DsfServiceTask),
        full_tag("sendTask"): (DsfSendTaskParser, DsfSendTask),
        full_tag("receiveTask"): (DsfReceiveTaskParser, DsfReceiveTask),
        full_tag("userTask"): (DsfUserTaskParser, DsfUserTask),
        full_tag("exclusiveGateway"): (DsfConditionalGatewayParser, DsfExclusiveGateway),
        full_tag("parallelGateway"): (DsfGatewayParser, DsfParallelGateway),
        full_tag("eventBasedGateway"): (DsfEventBasedGatewayParser, DsfEventBasedGateway),
        full_tag("subProcess"): (DsfSubProcessParser, DsfSubProcess),
    }

    def __init__(self) -> None:
        super().__init__(namespaces=NSMAP)

    def _get_parser_class(self, tag: str) -> tuple[Any, Any]:
        # Only DSF classes: an element that slipped past the subset check must fail here
        # rather than become a stock SpiffWorkflow spec without binding.
        parser_class: tuple[Any, Any] = self.OVERRIDE_PARSER_CLASSES.get(tag, (None, None))
        return parser_class


# ----------------------------------------------------------------------------- loading


def replace_placeholders(data: bytes, placeholders: Mapping[str, str], file: str) -> bytes:
    """Replace ``#{name}`` by ``placeholders[name]``; an unknown name is a ModelError.

    Values are XML-escaped, so a value with ``&`` or ``<`` reads back unchanged whether the
    placeholder sits in an attribute or in text.
    """

    def substitute(match: re.Match[bytes]) -> bytes:
        name = match.group(1).decode("utf-8", "replace")
        if name not in placeholders:
            line = data.count(b"\n", 0, match.start()) + 1
            raise ModelError(file, f"unresolved placeholder #{{{name}}}", line=line)
        return xml_escape(placeholders[name], {'"': "&quot;"}).encode("utf-8")

    return _PLACEHOLDER.sub(substitute, data)


@lru_cache(maxsize=1)
def _validator() -> Any:
    return BpmnValidator()  # reads the 100 kB BPMN XSD once per process


def _xml(data: bytes, file: str) -> Element:
    parser = etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=False)
    try:
        root = etree.fromstring(data, parser)
    except etree.XMLSyntaxError as exc:
        raise ModelError(file, f"malformed XML: {exc.msg}", line=exc.lineno) from None
    try:
        _validator().validate(root, file)
    except ValidationException as exc:
        line = exc.line_number or None
        element_id = _offending_id(root, _validator().validator.error_log.last_error, line)
        raise ModelError(file, f"not valid BPMN 2.0: {exc}", element_id=element_id, line=line) from None
    return root


def _offending_id(root: Element, entry: Any, line: int | None) -> str | None:
    """The id of the element an XSD error is about (or of its nearest ancestor with one)."""
    node = None
    try:
        found = root.getroottree().xpath(entry.path, namespaces={k: v for k, v in root.nsmap.items() if k})
        node = found[0] if found else None
    except (etree.XPathError, AttributeError, TypeError):
        pass
    if node is None:
        node = next((e for e in root.iter() if isinstance(e.tag, str) and e.sourceline == line), None)
    while node is not None and not node.get("id"):
        node = node.getparent()
    return node.get("id") if node is not None else None


def parse_bpmn(data: bytes | str, file: str, *, placeholders: Mapping[str, str] | None = None) -> ProcessModel:
    """Load one BPMN document (UTF-8) named ``file`` in messages."""
    raw = data.encode("utf-8") if isinstance(data, str) else data
    if placeholders is not None:
        raw = replace_placeholders(raw, placeholders, file)
    root = _xml(raw, file)
    check_subset(root, file)
    process = root.find(bpmn("process"))
    process_id = process.get("id")
    parser = DsfBpmnParser()
    try:
        parser.add_bpmn_xml(root, filename=file)
        spec = parser.get_spec(process_id)
        subprocess_specs = parser.get_subprocess_specs(process_id)
    except ValidationException as exc:
        element = root.xpath("//*[@id=$id]", id=exc.id) if exc.id else []
        raise ModelError(file, str(exc), element_id=exc.id or None,
                         line=element[0].sourceline if element else None) from exc
    for process_spec in (spec, *subprocess_specs.values()):
        _connect_multi_instance(process_spec)
    messages = {m.get("id"): m.get("name") for m in root.findall(bpmn("message"))}
    signals = {s.get("id"): s.get("name") for s in root.findall(bpmn("signal"))}
    starts = process.findall(bpmn("startEvent"))
    return ProcessModel(
        process_id=process_id,
        version=process.get(camunda("versionTag")).strip(),
        name=process.get("name"),
        file=file,
        spec=spec,
        subprocess_specs=subprocess_specs,
        start_messages=tuple(
            messages[d.get("messageRef")] for s in starts for d in s.findall(bpmn("messageEventDefinition"))
        ),
        start_signals=tuple(
            signals[d.get("signalRef")] for s in starts for d in s.findall(bpmn("signalEventDefinition"))
        ),
        extensions=read_properties(process),
    )


def _connect_multi_instance(process_spec: Any) -> None:
    # SpiffWorkflow connects an instance spec's completion to its multi-instance parent only
    # when the first child is created (or when a spec is deserialized). A workflow restored
    # onto freshly parsed specs would then never merge the children that were already
    # running: connect up front, as the spec deserializer does.
    for task_spec in process_spec.task_specs.values():
        if isinstance(task_spec, MultiInstanceTask):
            child = process_spec.task_specs[task_spec.task_spec]
            if not child.completed_event.is_connected(task_spec.merge_child):
                child.completed_event.connect(task_spec.merge_child)


def load_bpmn(path: str | Path, *, placeholders: Mapping[str, str] | None = None, file: str | None = None) -> ProcessModel:
    """Load the BPMN file at ``path``; ``file`` overrides the name used in messages."""
    source = Path(path)
    return parse_bpmn(source.read_bytes(), file or str(source), placeholders=placeholders)
