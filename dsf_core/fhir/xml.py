"""FHIR R4 XML <-> FHIR JSON (as Python dicts) without pydantic on the hot path.

The server keeps resources in their FHIR JSON form.  Java DSF peers talk FHIR XML by
default, so every resource that crosses the wire may need converting.  Validating through
``fhir.resources`` costs about a millisecond per resource; this module instead walks the
document once against compact per-type element tables (see
:mod:`dsf_core.fhir._xml_schema`, built lazily from the ``fhir.resources.R4B`` models) and
produces exactly the JSON structure the FHIR JSON format defines.  Profile and value
validation is a separate step on write.

Public API
==========

``parse_xml(data) -> dict``
    One resource in FHIR XML -> FHIR JSON dict (what ``json.loads`` of its FHIR JSON form
    gives, with the decimal caveat below).  Nested resources (``contained``,
    ``Bundle.entry.resource``, ``Bundle.entry.response.outcome``,
    ``Parameters.parameter.resource``) become dicts with ``resourceType``.

``to_xml(resource, *, pretty=False) -> bytes``
    FHIR JSON dict -> UTF-8 FHIR XML with an XML declaration, children in FHIR definition
    order whatever the order of the JSON keys.

``FhirXmlError``
    A ``ValueError`` for every problem (malformed XML, DOCTYPE, wrong namespace, unknown
    element or JSON property, wrong JSON type, ...) with the element path
    (``Bundle.entry[1].resource.Task.input[0].type``: JSON names, 0-based indexes, a nested
    resource shown by its type) and, when parsing, the line number.

``json_default(obj)``
    ``default=`` hook for ``orjson.dumps`` that writes ``Decimal`` values verbatim.

Mapping rules (FHIR R4 "XML representation" and "JSON representation")
=======================================================================

* Primitives: XML ``<status value="draft"/>`` <-> JSON ``"status": "draft"``.  An ``id``
  attribute or ``<extension>`` children of a primitive go to the ``_status`` companion
  property (``{"id": ..., "extension": [...]}``).  For repeating primitives both arrays are
  aligned and padded with ``null``; a side that would be all ``null`` is omitted.
* Complex elements: ``id`` is an XML attribute (``Resource.id`` stays an element), and so is
  ``Extension.url``.
* ``Narrative.div`` is embedded XHTML; in JSON it is the serialised ``<div
  xmlns="http://www.w3.org/1999/xhtml">...</div>`` string.  The string is re-parsed (with the
  same hardened parser) before it is written, so it cannot inject markup.
* JSON types: boolean -> ``True``/``False``; integer, unsignedInt, positiveInt -> ``int``
  (lexical form and 32-bit range checked); decimal -> ``decimal.Decimal`` (see below);
  everything else (dates, codes, base64Binary, ...) -> ``str``, unvalidated.

Decimal choice
==============

FHIR decimals carry their precision in the lexical form (``1.50`` is not ``1.5``), and a
float cannot keep it.  ``parse_xml`` therefore returns ``decimal.Decimal`` built from the
exact XML text.  ``to_xml`` accepts ``Decimal`` (written with its digits kept:
``Decimal("1.50")`` -> ``1.50``), ``int`` and ``float`` (what ``orjson.loads`` gives; written
as the shortest ``repr``).  To write dicts containing Decimals as JSON, use
``orjson.dumps(d, default=json_default)`` (emits the digits as a raw JSON number), or read
JSON with ``json.loads(s, parse_float=decimal.Decimal)`` to get the same values.

Security
========

lxml is driven with entity resolution off, no DTD loading, no network and size limits
(``huge_tree=False``); any DOCTYPE is rejected before and after parsing, so neither
billion-laughs nor external-entity (XXE) payloads are expanded or read.  Comments and
processing instructions are dropped by the parser and have no effect; XInclude is never
processed (an ``xi:include`` is just an element in a foreign namespace, hence an error).

Leniency
========

Child order is not enforced when parsing (only duplicates of non-repeating elements are
errors); attributes in foreign namespaces (``xsi:schemaLocation``) are ignored; XML
comments are dropped; a JSON ``fhir_comments`` property is ignored when writing; a
Narrative ``div`` string without ``xmlns`` is taken to be XHTML.

Limitations
===========

* The element tables are R4B (``fhir.resources`` has no R4 package): elements that exist
  only in R4 are "unknown".  None of the resources DSF uses differ.
* Without ``huge_tree`` libxml2 caps one attribute value at 10,000,000 bytes and nesting
  at 256 levels, so ``Binary.data`` above ~7.5 MB of content cannot arrive as XML.
* Decimals in exponent notation are re-written in Decimal's normal form (``1.5e-3`` ->
  ``0.0015``, ``1e2`` -> ``1E+2``); plain notation keeps its exact digits.
* Comments, processing instructions and CDATA markers (also inside the div) are not kept.
"""

from __future__ import annotations

import copy
import decimal
import operator
import re
import threading
from typing import Any, Final

import orjson
from lxml import etree

from dsf_core.fhir._xml_schema import (
    COMPLEX,
    FHIR_NS,
    PRIMITIVE,
    RESOURCE,
    SKIP,
    ElementSpec,
    TypeInfo,
    decimal_lexical,
    extension_info,
    json_type as _json_type,
    resource_info,
)

__all__ = ["FHIR_NS", "XHTML_NS", "FhirXmlError", "json_default", "parse_xml", "to_xml"]

XHTML_NS: Final = "http://www.w3.org/1999/xhtml"

_FHIR_PREFIX: Final = "{" + FHIR_NS + "}"
_FHIR_PREFIX_LEN: Final = len(_FHIR_PREFIX)
_FHIR_EXTENSION: Final = _FHIR_PREFIX + "extension"
_XHTML_PREFIX: Final = "{" + XHTML_NS + "}"
_XHTML_DIV: Final = _XHTML_PREFIX + "div"
_XML_DECLARATION: Final = '<?xml version="1.0" encoding="UTF-8"?>'
_LIBXML_POSITION: Final = re.compile(r",? line \d+, column \d+$")


class FhirXmlError(ValueError):
    """Malformed, unsafe or non-conforming FHIR XML, or JSON that cannot be written as XML.

    ``reason`` says what is wrong, ``path`` where (dotted FHIR element path, may be empty),
    ``line`` the XML source line when known.
    """

    def __init__(self, reason: str, *, path: str = "", line: int | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.path = path
        self.line = line
        # Segments collected innermost-first while a to_xml error unwinds the recursion.
        self._segments: list[str] = []

    def _prepend(self, segment: str) -> None:
        self._segments.append(segment)

    def _finish(self) -> FhirXmlError:
        """Turn the collected segments into ``path``."""
        if self._segments:
            parts: list[str] = []
            for segment in reversed(self._segments):
                if segment.startswith("[") or not parts:
                    parts.append(segment)
                else:
                    parts.append("." + segment)
            self.path = "".join(parts) + ("." + self.path if self.path else "")
            self._segments.clear()
        return self

    def __str__(self) -> str:
        text = self.reason
        if self.path:
            text = f"{text} (at {self.path})"
        if self.line is not None:
            text = f"{text} [line {self.line}]"
        return text


def json_default(obj: object) -> object:
    """``orjson.dumps(..., default=json_default)``: write Decimals with their exact digits."""
    if isinstance(obj, decimal.Decimal):
        return orjson.Fragment(decimal_lexical(obj).encode("ascii"))
    raise TypeError(f"Type is not JSON serializable: {type(obj).__name__}")


# --------------------------------------------------------------------------------------
# Hardened parser
# --------------------------------------------------------------------------------------

_parsers = threading.local()  # lxml parser objects must not be shared between threads


def _parser(force_utf8: bool) -> etree.XMLParser:
    key = "utf8" if force_utf8 else "auto"
    parser: etree.XMLParser | None = getattr(_parsers, key, None)
    if parser is None:
        parser = etree.XMLParser(
            encoding="utf-8" if force_utf8 else None,
            resolve_entities=False,  # never substitute entities (billion laughs)
            load_dtd=False,  # never fetch an external DTD (XXE)
            dtd_validation=False,
            no_network=True,
            huge_tree=False,  # keep libxml2's depth and size limits
            remove_comments=True,
            remove_pis=True,
            strip_cdata=True,
            collect_ids=False,
        )
        setattr(_parsers, key, parser)
    return parser


def _parse_document(data: bytes | str) -> etree._Element:
    if isinstance(data, str):
        # lxml refuses str input carrying an encoding declaration; the text is already
        # decoded, so hand lxml UTF-8 bytes and make it ignore the declared encoding.
        raw = data.encode("utf-8", "surrogatepass")
        force_utf8 = True
    elif isinstance(data, (bytes, bytearray, memoryview)):
        raw = bytes(data)
        force_utf8 = False
    else:
        raise FhirXmlError(f"expected XML as bytes or str, got {type(data).__name__}")
    # Cheap pre-check: refuse DTDs before libxml2 sees them at all.
    if b"<!DOCTYPE" in raw or b"<!ENTITY" in raw:
        raise FhirXmlError("DOCTYPE / entity declarations are not allowed in FHIR XML")
    try:
        root = etree.fromstring(raw, _parser(force_utf8))
    except etree.XMLSyntaxError as exc:
        # libxml2 appends ", line L, column C" to its message; report the line separately.
        message = _LIBXML_POSITION.sub("", (exc.msg or "syntax error").strip())
        line = exc.lineno or None
        if exc.offset:
            message += f" (column {exc.offset})"
        raise FhirXmlError(f"malformed XML: {message}", line=line) from None
    except ValueError as exc:  # e.g. lxml rejects an odd encoding
        raise FhirXmlError(f"malformed XML: {exc}") from None
    if root is None:
        raise FhirXmlError("empty XML document")
    # Second line of defence: a DOCTYPE hidden by an encoding the byte scan cannot see.
    if root.getroottree().docinfo.doctype:
        raise FhirXmlError("DOCTYPE / entity declarations are not allowed in FHIR XML")
    return root


# --------------------------------------------------------------------------------------
# XML -> JSON
# --------------------------------------------------------------------------------------


def parse_xml(data: bytes | str) -> dict[str, Any]:
    """Convert one FHIR R4 resource in XML to its FHIR JSON form (a dict).

    Raises :class:`FhirXmlError` for malformed or unsafe XML, a root outside the FHIR
    namespace, an unknown resource type, unknown elements or attributes, text content
    outside the Narrative, and primitive values of the wrong lexical form for boolean,
    the integer types and decimal.
    """
    root = _parse_document(data)
    tag = root.tag
    if not isinstance(tag, str) or not tag.startswith(_FHIR_PREFIX):
        raise FhirXmlError(
            f"root element {_describe_tag(tag)} is not in the FHIR namespace {FHIR_NS}",
            line=root.sourceline,
        )
    _check_no_text(root)
    try:
        return _parse_resource(root)
    except RecursionError:  # pragma: no cover - libxml2 caps the depth well below this
        raise FhirXmlError("document nested too deeply") from None


def _check_no_text(root: etree._Element) -> None:
    """FHIR elements carry data only in attributes; text is allowed only in XHTML.

    One XPath pass in C finds every non-blank text node, instead of reading ``.text`` and
    ``.tail`` of every element from Python.
    """
    for text in _text_xpath()(root):
        owner = text.getparent()
        container = owner.getparent() if text.is_tail else owner
        if container is None or not container.tag.startswith(_XHTML_PREFIX):
            raise _xml_error(
                container if container is not None else owner,
                f"unexpected text content {_short(text)!r}",
            )


def _text_xpath() -> etree.XPath:
    xpath: etree.XPath | None = getattr(_parsers, "text_xpath", None)
    if xpath is None:
        xpath = _parsers.text_xpath = etree.XPath("//text()[normalize-space()]")
    return xpath


def _parse_resource(el: etree._Element) -> dict[str, Any]:
    name = el.tag[_FHIR_PREFIX_LEN:]
    info = resource_info(name)
    if info is None:
        raise _xml_error(el, f"unknown resource type {name!r}")
    out: dict[str, Any] = {"resourceType": name}
    _parse_children(el, info, out)
    return out


def _parse_children(el: etree._Element, info: TypeInfo, out: dict[str, Any]) -> None:
    """Fill ``out`` from the attributes and child elements of ``el`` (of type ``info``)."""
    attributes = el.items()
    if attributes:
        for key, attribute_value in attributes:
            spec = info.attributes.get(key)
            if spec is not None:
                out[spec.name] = attribute_value
            elif key[0] != "{":  # foreign-namespace attributes are ignorable
                raise _xml_error(el, f"unexpected attribute {key!r} on {info.name}")

    # Repeating primitives: JSON name -> (values, companions), aligned by index.
    prim_lists: dict[str, tuple[list[Any], list[Any]]] | None = None
    xml_elements = info.xml_elements
    for child in el:
        # One lookup by the namespaced tag checks namespace and name at once.
        spec = xml_elements.get(child.tag)
        if spec is None:
            _parse_foreign(child, info, out)
            continue
        name = spec.name
        kind = spec.kind
        if kind == PRIMITIVE:
            # Fast path: <name value="..."/> with nothing else.
            items = child.items()
            if len(items) == 1 and items[0][0] == "value" and not len(child):
                parse = spec.parse
                if parse is None:
                    value: Any = items[0][1]
                else:
                    try:
                        value = parse(items[0][1])
                    except ValueError as exc:
                        raise _xml_error(child, str(exc)) from None
                companion = None
            else:
                value, companion = _parse_primitive(child, spec, items)
            if spec.is_list:
                if prim_lists is None:
                    prim_lists = {}
                pair = prim_lists.get(name)
                if pair is None:
                    pair = prim_lists[name] = ([], [])
                    out[name] = pair[0]  # placeholder keeps document key order
                pair[0].append(value)
                pair[1].append(companion)
                continue
            if name in out or spec.ext_name in out:
                raise _xml_error(child, f"repeated element {name!r} in {info.name}")
            if value is not None:
                out[name] = value
            if companion is not None:
                out[spec.ext_name] = companion
            continue
        if kind == COMPLEX:
            item: dict[str, Any] = {}
            _parse_children(child, spec.info, item)
            if not item:
                raise _xml_error(child, f"element {name!r} has no content")
        else:  # RESOURCE
            item = _parse_resource_container(child)
        if spec.is_list:
            items_list = out.get(name)
            if items_list is None:
                out[name] = [item]
            else:
                items_list.append(item)
        elif name in out:
            raise _xml_error(child, f"repeated element {name!r} in {info.name}")
        else:
            out[name] = item

    if prim_lists is not None:
        for name, (values, companions) in prim_lists.items():
            if all(value is None for value in values):
                del out[name]
            if any(companion is not None for companion in companions):
                out["_" + name] = companions


def _parse_foreign(child: etree._Element, info: TypeInfo, out: dict[str, Any]) -> None:
    """A child that is not a FHIR element of ``info``: the Narrative div, or an error."""
    tag = child.tag
    if tag == _XHTML_DIV and info.has_xhtml:
        if "div" in out:
            raise _xml_error(child, "repeated element 'div'")
        out["div"] = _xhtml_to_string(child)
        return
    if not isinstance(tag, str):  # cannot happen without a DTD; be explicit anyway
        raise _xml_error(child, "unexpected non-element node")
    if not tag.startswith(_FHIR_PREFIX):
        raise _xml_error(child, f"element {_describe_tag(tag)} is not in the FHIR namespace")
    name = tag[_FHIR_PREFIX_LEN:]
    if name == "div" and info.has_xhtml:
        raise _xml_error(child, f"element 'div' must be in the XHTML namespace {XHTML_NS}")
    if name in info.attributes:
        raise _xml_error(child, f"{name!r} must be an XML attribute in {info.name}")
    raise _xml_error(child, f"unknown element {name!r} in {info.name}")


def _parse_primitive(
    el: etree._Element, spec: ElementSpec, attributes: list[tuple[str, str]]
) -> tuple[Any, dict[str, Any] | None]:
    """Slow path of a primitive: return (JSON value or None, ``_name`` companion or None)."""
    value: Any = None
    companion: dict[str, Any] | None = None
    for key, text in attributes:
        if key == "value":
            parse = spec.parse
            if parse is None:
                value = text
            else:
                try:
                    value = parse(text)
                except ValueError as exc:
                    raise _xml_error(el, str(exc)) from None
        elif key == "id":
            companion = {"id": text}
        elif key[0] != "{":
            raise _xml_error(el, f"unexpected attribute {key!r} on primitive {spec.name!r}")
    if len(el):
        extensions: list[dict[str, Any]] = []
        ext_info = extension_info()
        for child in el:
            if child.tag != _FHIR_EXTENSION:
                raise _xml_error(
                    child,
                    f"unexpected element {_describe_tag(child.tag)} in primitive "
                    f"{spec.name!r} (only extension is allowed)",
                )
            item: dict[str, Any] = {}
            _parse_children(child, ext_info, item)
            extensions.append(item)
        if companion is None:
            companion = {}
        companion["extension"] = extensions
    if value is None and companion is None:
        raise _xml_error(el, f"primitive {spec.name!r} has neither a value nor extensions")
    return value, companion


def _parse_resource_container(el: etree._Element) -> dict[str, Any]:
    """``<resource><Patient>...</Patient></resource>``: exactly one resource child."""
    for key, _ in el.items():
        if key[0] != "{":
            raise _xml_error(el, f"unexpected attribute {key!r}")
    if len(el) != 1:
        raise _xml_error(el, f"expected exactly one resource inside, found {len(el)} elements")
    child = el[0]
    tag = child.tag
    if not isinstance(tag, str) or not tag.startswith(_FHIR_PREFIX):
        raise _xml_error(child, f"element {_describe_tag(tag)} is not in the FHIR namespace")
    return _parse_resource(child)


def _xhtml_to_string(el: etree._Element) -> str:
    if len(el.nsmap) == 1:
        # Only the XHTML default namespace is in scope: serialise directly.
        return str(etree.tostring(el, encoding="unicode", with_tail=False))
    # Drop namespace declarations inherited from the FHIR document (e.g. xmlns:xsi) that
    # the XHTML does not use, so the JSON string does not depend on the envelope.
    detached = copy.deepcopy(el)
    detached.tail = None
    etree.cleanup_namespaces(detached)
    return str(etree.tostring(detached, encoding="unicode", with_tail=False))


def _xml_error(el: etree._Element, reason: str) -> FhirXmlError:
    return FhirXmlError(reason, path=_element_path(el), line=el.sourceline)


def _element_path(el: etree._Element) -> str:
    """Dotted path from the root (``Bundle.entry[1].resource.Task.status``), computed
    only on error so the hot path carries no path bookkeeping."""
    parts: list[str] = []
    node: etree._Element | None = el
    while node is not None:
        tag = node.tag
        if not isinstance(tag, str):
            parts.append("?")
            node = node.getparent()
            continue
        name = etree.QName(tag).localname
        parent = node.getparent()
        if parent is not None:
            same = [sibling for sibling in parent if sibling.tag == tag]
            if len(same) > 1:
                name += f"[{same.index(node)}]"
        parts.append(name)
        node = parent
    return ".".join(reversed(parts))


def _describe_tag(tag: object) -> str:
    if not isinstance(tag, str):
        return "(non-element node)"
    qname = etree.QName(tag)
    if qname.namespace is None:
        return f"{qname.localname!r} (no namespace)"
    return f"{qname.localname!r} (namespace {qname.namespace})"


def _short(text: str) -> str:
    text = text.strip()
    return text if len(text) <= 40 else text[:37] + "..."


# --------------------------------------------------------------------------------------
# JSON -> XML
# --------------------------------------------------------------------------------------

# Characters that need escaping in a double-quoted attribute value (whitespace other than
# the space would be normalised away by XML parsers) plus characters XML 1.0 cannot carry.
_ATTR_SPECIAL: Final = re.compile('[&<>"\t\n\r\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]')
_XML_INVALID: Final = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")
_INDENT: Final = "  "


def to_xml(resource: dict[str, Any], *, pretty: bool = False) -> bytes:
    """Convert a FHIR JSON resource (dict) to FHIR R4 XML (UTF-8 bytes).

    Children are written in FHIR definition order.  Raises :class:`FhirXmlError` for an
    unknown ``resourceType``, unknown properties, JSON values of the wrong type,
    misaligned primitive/``_primitive`` arrays or an invalid Narrative ``div``.
    """
    out: list[str] = [_XML_DECLARATION]
    try:
        _write_resource(out, resource, "\n" if pretty else "", ' xmlns="' + FHIR_NS + '"')
    except FhirXmlError as exc:
        raise exc._finish() from None
    except RecursionError:
        raise FhirXmlError("resource nested too deeply") from None
    if pretty:
        out.append("\n")
    return "".join(out).encode("utf-8")


def _write_resource(out: list[str], resource: Any, nl: str, xmlns: str = "") -> None:
    """Write ``<Type>...</Type>``; ``nl`` is the newline+indent of this element ("" when
    not pretty-printing)."""
    if type(resource) is not dict:
        raise FhirXmlError(f"expected a resource (JSON object), got {_json_type(resource)}")
    resource_type = resource.get("resourceType")
    if not isinstance(resource_type, str):
        raise FhirXmlError("resource has no resourceType")
    info = resource_info(resource_type)
    if info is None:
        raise FhirXmlError(f"unknown resourceType {resource_type!r}")
    try:
        _write_object(out, resource, info, resource_type, nl, xmlns)
    except FhirXmlError as exc:
        exc._prepend(resource_type)
        raise


def _write_object(
    out: list[str], obj: Any, info: TypeInfo, tag: str, nl: str, extra_attrs: str = ""
) -> None:
    """Write one complex element or resource body as ``<tag ...>children</tag>``."""
    if type(obj) is not dict:
        raise FhirXmlError(f"expected a JSON object for {info.name}, got {_json_type(obj)}")
    # Which XML attributes and children, in definition order, for this set of JSON keys.
    # Objects of one type mostly share a few key layouts, so the plan is memoised.
    keys = tuple(obj)
    plan = info.plans.get(keys)
    if plan is None:
        plan = _make_plan(info, keys)
    attr_specs, child_specs = plan

    start = "<" + tag + extra_attrs
    for spec in attr_specs:
        value = obj[spec.name]
        if type(value) is not str:
            raise FhirXmlError(
                f"expected a JSON string for {spec.name!r}, got {_json_type(value)}"
            )
        if _ATTR_SPECIAL.search(value) is not None:
            value = _escape_attr(value)
        start += " " + spec.name + '="' + value + '"'
    if not child_specs:
        out.append(nl + start + "/>")
        return
    out.append(nl + start + ">")
    child_nl = nl + _INDENT if nl else ""
    for spec in child_specs:
        try:
            if spec.kind == PRIMITIVE and not spec.is_list and spec.ext_name not in obj:
                # Fast path: a single primitive with a value and no id/extensions.
                value = obj[spec.name]
                if spec.parse is None and type(value) is str:
                    lexical = value  # string-valued type, already a str
                elif value is None:
                    raise FhirXmlError(f"primitive {spec.name!r} is null")
                elif type(value) is list:
                    raise FhirXmlError(f"{spec.name!r} does not repeat but a JSON array was given")
                else:
                    lexical = _format_value(spec, value)
                if _ATTR_SPECIAL.search(lexical) is not None:
                    lexical = _escape_attr(lexical)
                out.append(child_nl + "<" + spec.name + ' value="' + lexical + '"/>')
            else:
                _write_element(out, obj, spec, child_nl)
        except FhirXmlError as exc:
            # A primitive's companion already names itself ("_status.extension[0]").
            if not exc._segments or exc._segments[-1] != spec.ext_name:
                exc._prepend(spec.name)
            raise
    out.append(nl + "</" + tag + ">")


_PLAN_CACHE_LIMIT: Final = 256  # key layouts remembered per type; bounds memory


def _make_plan(
    info: TypeInfo, keys: tuple[str, ...]
) -> tuple[tuple[ElementSpec, ...], tuple[ElementSpec, ...]]:
    json_keys = info.json_keys
    specs: list[ElementSpec] = []
    for key in keys:
        spec = json_keys.get(key)
        if spec is None:
            raise FhirXmlError(f"unknown property {key!r} in {info.name}", path=key)
        if spec is not SKIP:
            specs.append(spec)
    specs.sort(key=_spec_index)
    attr_specs: list[ElementSpec] = []
    child_specs: list[ElementSpec] = []
    previous: ElementSpec | None = None
    for spec in specs:
        if spec is previous:  # "x" and "_x" share one spec
            continue
        previous = spec
        (attr_specs if spec.is_attribute else child_specs).append(spec)
    plan = (tuple(attr_specs), tuple(child_specs))
    if len(info.plans) < _PLAN_CACHE_LIMIT:
        info.plans[keys] = plan
    return plan


_spec_index: Final = operator.attrgetter("index")


def _format_value(spec: ElementSpec, value: Any) -> str:
    try:
        return spec.format(value)
    except (TypeError, ValueError) as exc:
        raise FhirXmlError(f"{spec.name!r} ({spec.type_name}): {exc}") from None


def _write_element(out: list[str], obj: dict[str, Any], spec: ElementSpec, nl: str) -> None:
    name = spec.name
    kind = spec.kind
    if kind == PRIMITIVE:
        value = obj.get(name)
        companion = obj.get(spec.ext_name)
        if not spec.is_list:
            if isinstance(value, list) or isinstance(companion, list):
                raise FhirXmlError(f"{name!r} does not repeat but a JSON array was given")
            _write_primitive(out, spec, value, companion, nl)
            return
        values = _as_list(value, name)
        companions = _as_list(companion, spec.ext_name)
        if values and companions and len(values) != len(companions):
            raise FhirXmlError(
                f"{name!r} and {spec.ext_name!r} arrays differ in length "
                f"({len(values)} != {len(companions)})"
            )
        for i in range(max(len(values), len(companions))):
            try:
                _write_primitive(
                    out,
                    spec,
                    values[i] if values else None,
                    companions[i] if companions else None,
                    nl,
                )
            except FhirXmlError as exc:
                exc._prepend(f"[{i}]")
                raise
        return

    value = obj[name]
    if spec.is_list:
        if type(value) is not list:
            raise FhirXmlError(f"{name!r} repeats; expected a JSON array, got {_json_type(value)}")
        items = value
    else:
        if type(value) is list:
            raise FhirXmlError(f"{name!r} does not repeat but a JSON array was given")
        items = [value]
    for i, item in enumerate(items):
        try:
            if kind == COMPLEX:
                _write_object(out, item, spec.info, name, nl)
            elif kind == RESOURCE:
                out.append(nl + "<" + name + ">")
                _write_resource(out, item, nl + _INDENT if nl else "")
                out.append(nl + "</" + name + ">")
            else:  # XHTML
                out.append(nl + _xhtml_from_string(item))
        except FhirXmlError as exc:
            if spec.is_list:
                exc._prepend(f"[{i}]")
            raise


def _as_list(value: Any, name: str) -> list[Any]:
    if value is None:
        return []
    if type(value) is not list:
        raise FhirXmlError(f"{name!r} repeats; expected a JSON array, got {_json_type(value)}")
    return value


def _write_primitive(out: list[str], spec: ElementSpec, value: Any, companion: Any, nl: str) -> None:
    attrs = ""
    extensions: Any = None
    if companion is not None:
        if type(companion) is not dict:
            raise FhirXmlError(
                f"{spec.ext_name!r} must be a JSON object, got {_json_type(companion)}"
            )
        for key, item in companion.items():
            if key == "id":
                if not isinstance(item, str):
                    raise FhirXmlError(f"{spec.ext_name}.id must be a string")
                attrs = ' id="' + _escape_attr(item) + '"'
            elif key == "extension":
                if type(item) is not list:
                    raise FhirXmlError(f"{spec.ext_name}.extension must be a JSON array")
                extensions = item
            elif key != "fhir_comments":
                raise FhirXmlError(f"unknown property {key!r} in {spec.ext_name!r}")
    if value is not None:
        attrs += ' value="' + _escape_attr(_format_value(spec, value)) + '"'
    elif not attrs and not extensions:
        raise FhirXmlError(f"primitive {spec.name!r} has neither a value nor extensions")
    if not extensions:
        out.append(nl + "<" + spec.name + attrs + "/>")
        return
    out.append(nl + "<" + spec.name + attrs + ">")
    child_nl = nl + _INDENT if nl else ""
    ext_info = extension_info()
    for i, extension in enumerate(extensions):
        try:
            _write_object(out, extension, ext_info, "extension", child_nl)
        except FhirXmlError as exc:
            exc._prepend(f"extension[{i}]")
            if not spec.is_list:  # a list item is named by its index instead
                exc._prepend(spec.ext_name)
            raise
    out.append(nl + "</" + spec.name + ">")


def _escape_attr(value: str) -> str:
    if _ATTR_SPECIAL.search(value) is None:
        return value
    bad = _XML_INVALID.search(value)
    if bad is not None:
        raise FhirXmlError(f"character U+{ord(bad.group()):04X} cannot be represented in XML")
    return (
        value.replace("&", "&amp;")
        .replace("<", "&lt;")
        .replace(">", "&gt;")
        .replace('"', "&quot;")
        .replace("\t", "&#9;")
        .replace("\n", "&#10;")
        .replace("\r", "&#13;")
    )


def _xhtml_from_string(div: Any) -> str:
    """Validate a Narrative div string and return it as well-formed XHTML markup."""
    if not isinstance(div, str):
        raise FhirXmlError(f"Narrative div must be a JSON string, got {_json_type(div)}")
    raw = div.encode("utf-8", "surrogatepass")
    if b"<!DOCTYPE" in raw or b"<!ENTITY" in raw:
        raise FhirXmlError("DOCTYPE / entity declarations are not allowed in Narrative div")
    try:
        el = etree.fromstring(raw, _parser(True))
    except (etree.XMLSyntaxError, ValueError) as exc:
        raise FhirXmlError(f"Narrative div is not well-formed XHTML: {exc}") from None
    if el.tag == "div":
        # Lenient: a div written without xmlns is taken to be XHTML, as FHIR intends.  It
        # was just parsed as one complete element, so wrapping it cannot change its
        # structure; inside the wrapper every unprefixed name inherits the XHTML namespace.
        wrapped = b'<w xmlns="' + XHTML_NS.encode() + b'">' + raw + b"</w>"
        try:
            el = etree.fromstring(wrapped, _parser(True))[0]
        except (etree.XMLSyntaxError, ValueError, IndexError) as exc:
            raise FhirXmlError(f"Narrative div is not well-formed XHTML: {exc}") from None
    if el.tag != _XHTML_DIV:
        raise FhirXmlError(
            f"Narrative div must be an XHTML <div> element, got {_describe_tag(el.tag)}"
        )
    return str(etree.tostring(el, encoding="unicode", with_tail=False))

