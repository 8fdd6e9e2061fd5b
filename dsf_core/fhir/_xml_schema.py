"""Compact FHIR R4 element tables derived from the ``fhir.resources.R4B`` models.

The XML <-> JSON converter in :mod:`dsf_core.fhir.xml` needs, for every FHIR type, the
element names in definition order, whether each repeats, and whether it is a primitive
(and which JSON kind), a complex datatype / backbone element, a nested resource, or the
Narrative XHTML ``div``.  All of that is available from the pydantic models shipped by
``fhir.resources.R4B``:

* ``Model.elements_sequence()`` lists the JSON element names in FHIR definition order,
  with choice elements already expanded (``valueString``, ``valueCoding``, ...);
* ``Model.model_fields[...]`` (looked up by alias, because ``for`` is ``for_fhir``) carries
  the annotation: ``Optional[List[...]]`` for repeating elements, ``Annotated[str, Code()]``
  style metadata for primitives (the metadata object's ``__visit_name__`` is the FHIR
  primitive type name), plain ``bool`` for ``boolean``, and a ``fhir_core.types.FhirBase``
  subclass for complex types whose ``get_model_klass()`` gives the model class.  Nested
  resources (``contained``, ``Bundle.entry.resource``, ...) are typed as the abstract
  ``Resource`` model.

Tables are built lazily, one model class at a time, and cached forever: the set of FHIR
types is finite (a few hundred classes), so the cache is bounded.  Child tables are
resolved on first use, which also breaks the recursion of self-referencing types such
as ``Extension.extension``.  Nothing here validates or instantiates a pydantic model.
"""

from __future__ import annotations

import decimal
import re
import types
import typing
from collections.abc import Callable
from typing import Annotated, Any, Final, Union

from fhir_core.fhirabstractmodel import FHIRAbstractModel
from fhir_core.types import FhirBase

import fhir.resources.R4B as _r4b

__all__ = [
    "COMPLEX",
    "FHIR_NS",
    "ElementSpec",
    "JsonPrimitive",
    "PRIMITIVE",
    "RESOURCE",
    "SKIP",
    "TypeInfo",
    "XHTML",
    "decimal_lexical",
    "extension_info",
    "json_type",
    "resource_info",
]

JsonPrimitive = Union[str, bool, int, decimal.Decimal]

FHIR_NS: Final = "http://hl7.org/fhir"

# Element kinds, kept as small ints because they are compared in the hot loops.
PRIMITIVE: Final = 0
COMPLEX: Final = 1
RESOURCE: Final = 2
XHTML: Final = 3

# Resource types that exist as models but can never appear as a concrete resource.
_ABSTRACT_RESOURCES: Final = frozenset({"Resource", "DomainResource"})

# Lexical forms from the FHIR R4 datatype definitions (valueset-regex extensions).
_INTEGER_RE: Final = re.compile(r"-?(?:0|[1-9][0-9]*)")
_UNSIGNED_RE: Final = re.compile(r"0|[1-9][0-9]*")
_POSITIVE_RE: Final = re.compile(r"\+?[1-9][0-9]*")
_DECIMAL_RE: Final = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?")
_INT32_MIN: Final = -(2**31)
_INT32_MAX: Final = 2**31 - 1


# --------------------------------------------------------------------------------------
# Primitive value conversion: XML lexical form <-> FHIR JSON value
# --------------------------------------------------------------------------------------


def _parse_string(text: str) -> str:
    return text


def _parse_boolean(text: str) -> bool:
    if text == "true":
        return True
    if text == "false":
        return False
    raise ValueError(f"invalid boolean {text!r} (must be 'true' or 'false')")


def _int_parser(pattern: re.Pattern[str], minimum: int, type_name: str) -> Callable[[str], int]:
    def parse(text: str) -> int:
        if pattern.fullmatch(text) is None:
            raise ValueError(f"invalid {type_name} {text!r}")
        value = int(text)
        if not minimum <= value <= _INT32_MAX:
            raise ValueError(f"{type_name} {text!r} out of range")
        return value

    return parse


def _parse_decimal(text: str) -> decimal.Decimal:
    # Decimal keeps the exact digits (including trailing zeros such as "1.50"),
    # which FHIR requires for decimal precision; float would not.
    if _DECIMAL_RE.fullmatch(text) is None:
        raise ValueError(f"invalid decimal {text!r}")
    return decimal.Decimal(text)


def _format_string(value: object) -> str:
    if isinstance(value, str):
        return value
    raise TypeError(f"expected a JSON string, got {json_type(value)}")


def _format_boolean(value: object) -> str:
    if value is True:
        return "true"
    if value is False:
        return "false"
    raise TypeError(f"expected a JSON boolean, got {json_type(value)}")


def _format_integer(value: object) -> str:
    # bool is an int subclass; FHIR JSON true is not the integer 1.
    if type(value) is int:
        return str(value)
    raise TypeError(f"expected a JSON integer, got {json_type(value)}")


def decimal_lexical(value: decimal.Decimal) -> str:
    """Return the FHIR lexical form of a finite Decimal, keeping its digits.

    ``str(Decimal)`` switches to exponent notation for small magnitudes
    (``Decimal("0.0000001")`` prints as ``1E-7``), which would change the lexical
    form of values that were written in plain notation.  A plain-notation input
    always has an exponent <= 0, so those are written with ``format(..., "f")``
    (``1.50`` stays ``1.50``); a positive exponent can only come from an input in
    exponent notation, which ``str`` reproduces (``1E+2``).
    """
    if not value.is_finite():
        raise ValueError(f"decimal {value} is not a finite number")
    exponent = value.as_tuple().exponent
    if isinstance(exponent, int) and exponent <= 0:
        return format(value, "f")
    return str(value)


def _format_decimal(value: object) -> str:
    if isinstance(value, decimal.Decimal):
        return decimal_lexical(value)
    if type(value) is int:
        return str(value)
    if type(value) is float:
        # A float comes from a JSON parser without Decimal support (e.g. orjson);
        # repr() is the shortest string that reads back as the same float.
        text = repr(value)
        if "e" in text or "n" in text:  # exponent form, or inf/nan
            return decimal_lexical(decimal.Decimal(text))
        return text
    raise TypeError(f"expected a JSON number, got {json_type(value)}")


def json_type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float, decimal.Decimal)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


# FHIR primitive type name -> (XML->JSON parser, JSON->XML formatter).  Every type not
# listed here is a JSON string (dates, codes, uris, base64Binary, integer64, ...).
_PRIMITIVE_CODECS: Final[dict[str, tuple[Callable[[str], Any], Callable[[object], str]]]] = {
    "boolean": (_parse_boolean, _format_boolean),
    "integer": (_int_parser(_INTEGER_RE, _INT32_MIN, "integer"), _format_integer),
    "unsignedInt": (_int_parser(_UNSIGNED_RE, 0, "unsignedInt"), _format_integer),
    "positiveInt": (_int_parser(_POSITIVE_RE, 1, "positiveInt"), _format_integer),
    "decimal": (_parse_decimal, _format_decimal),
}
_STRING_CODEC: Final = (_parse_string, _format_string)


# --------------------------------------------------------------------------------------
# Tables
# --------------------------------------------------------------------------------------


class ElementSpec:
    """One element of a FHIR type: how it maps between XML and JSON."""

    __slots__ = (
        "name",
        "ext_name",
        "index",
        "is_list",
        "kind",
        "type_name",
        "is_attribute",
        "parse",
        "format",
        "_model",
        "_info",
    )

    def __init__(
        self,
        name: str,
        index: int,
        is_list: bool,
        kind: int,
        type_name: str,
        *,
        is_attribute: bool = False,
        model: type[FHIRAbstractModel] | None = None,
    ) -> None:
        self.name = name
        self.ext_name = "_" + name  # JSON companion property of a primitive
        self.index = index
        self.is_list = is_list
        self.kind = kind
        self.type_name = type_name  # FHIR type, for error messages
        self.is_attribute = is_attribute  # Element.id / Extension.url are XML attributes
        codec = _PRIMITIVE_CODECS.get(type_name, _STRING_CODEC)
        #: XML lexical -> JSON value; None for string-valued types (identity), which
        #: saves a call per element on the hot path
        self.parse: Callable[[str], Any] | None = None if codec is _STRING_CODEC else codec[0]
        self.format: Callable[[object], str] = codec[1]
        self._model = model
        self._info: TypeInfo | None = None

    @property
    def info(self) -> TypeInfo:
        """Table of the complex type of this element (resolved on first use)."""
        info = self._info
        if info is None:
            if self._model is None:
                raise TypeError(f"element {self.name} has no complex type")
            info = self._info = _info_for_model(self._model)
        return info

    def __repr__(self) -> str:
        return (
            f"ElementSpec({self.name!r}, type={self.type_name!r}, kind={self.kind}, "
            f"list={self.is_list}, index={self.index})"
        )


# Placeholder for JSON keys that are accepted but produce no XML (resourceType is the
# element name; fhir_comments is a fhir.resources / DSTU2 leftover that R4 drops).
SKIP: Final = ElementSpec("", -1, False, PRIMITIVE, "string")


class TypeInfo:
    """Element table of one FHIR type (resource, datatype or backbone element)."""

    __slots__ = (
        "name",
        "is_resource",
        "elements",
        "xml_elements",
        "attributes",
        "json_keys",
        "has_xhtml",
        "plans",
    )

    def __init__(self, name: str, is_resource: bool, specs: list[ElementSpec]) -> None:
        self.name = name
        self.is_resource = is_resource
        #: XML child element name -> spec (also the JSON property name)
        self.elements: dict[str, ElementSpec] = {}
        #: the same keyed by the namespaced lxml tag, "{http://hl7.org/fhir}name", so
        #: that one dict lookup checks namespace and name together
        self.xml_elements: dict[object, ElementSpec] = {}
        #: XML attribute name -> spec (``id`` of elements, ``url`` of Extension)
        self.attributes: dict[str, ElementSpec] = {}
        #: every JSON property name accepted, including ``_name`` primitive companions
        self.json_keys: dict[str, ElementSpec] = {"fhir_comments": SKIP}
        if is_resource:
            self.json_keys["resourceType"] = SKIP
        self.has_xhtml = False
        #: memo of JSON key layout -> (attribute specs, child specs) used by to_xml
        self.plans: dict[tuple[str, ...], tuple[tuple[ElementSpec, ...], tuple[ElementSpec, ...]]] = {}
        for spec in specs:
            self.json_keys[spec.name] = spec
            if spec.is_attribute:
                self.attributes[spec.name] = spec
                continue
            self.elements[spec.name] = spec
            if spec.kind != XHTML:  # the div lives in the XHTML namespace
                self.xml_elements["{" + FHIR_NS + "}" + spec.name] = spec
            if spec.kind == PRIMITIVE:
                self.json_keys[spec.ext_name] = spec
            elif spec.kind == XHTML:
                self.has_xhtml = True

    def __repr__(self) -> str:
        return f"TypeInfo({self.name!r}, {len(self.elements)} elements)"


_infos: dict[type, TypeInfo] = {}
_resource_infos: dict[str, TypeInfo] = {}


def resource_info(resource_type: str) -> TypeInfo | None:
    """Table of a concrete R4B resource type, or None if there is no such resource.

    Only known names are cached, so untrusted input cannot grow the cache.
    """
    info = _resource_infos.get(resource_type)
    if info is not None:
        return info
    if not resource_type.isascii() or not resource_type.isalpha():
        return None
    if resource_type in _ABSTRACT_RESOURCES:
        return None
    try:
        model = _r4b.get_fhir_model_class(resource_type)
    except (ValueError, ImportError):
        return None
    if not model.has_resource_base() or model.get_resource_type() != resource_type:
        return None  # a datatype or backbone element name, not a resource
    info = _resource_infos[resource_type] = _info_for_model(model)
    return info


def extension_info() -> TypeInfo:
    """Table of the Extension datatype (children of primitive elements)."""
    return _info_for_model(_r4b.get_fhir_model_class("Extension"))


def _info_for_model(model: type[FHIRAbstractModel]) -> TypeInfo:
    info = _infos.get(model)
    if info is None:
        info = _infos[model] = _build_info(model)
    return info


def _build_info(model: type[FHIRAbstractModel]) -> TypeInfo:
    is_resource = bool(model.has_resource_base())
    is_extension = model.get_resource_type() == "Extension"
    by_alias = {(field.alias or name): field for name, field in model.model_fields.items()}
    specs: list[ElementSpec] = []
    for index, name in enumerate(model.elements_sequence()):
        field = by_alias[name]
        is_list, kind, type_name, target = _classify(field.annotation, f"{model.__name__}.{name}")
        # In XML, Element.id (not Resource.id) and Extension.url are attributes.
        is_attribute = (name == "id" and not is_resource) or (name == "url" and is_extension)
        specs.append(
            ElementSpec(
                name, index, is_list, kind, type_name, is_attribute=is_attribute, model=target
            )
        )
    return TypeInfo(model.get_resource_type(), is_resource, specs)


def _strip_optional(annotation: Any) -> Any:
    origin = typing.get_origin(annotation)
    if origin is Union or origin is types.UnionType:
        # Optional[X] -> X; Resource.id is Union[Id, String] -> take the first.
        args = [arg for arg in typing.get_args(annotation) if arg is not type(None)]
        return args[0]
    return annotation


def _classify(
    annotation: Any, where: str
) -> tuple[bool, int, str, type[FHIRAbstractModel] | None]:
    """Return (is_list, kind, FHIR type name, complex model) for a field annotation."""
    annotation = _strip_optional(annotation)
    is_list = False
    if typing.get_origin(annotation) is list:
        is_list = True
        annotation = _strip_optional(typing.get_args(annotation)[0])
    if annotation is bool:
        return is_list, PRIMITIVE, "boolean", None
    if typing.get_origin(annotation) is Annotated:
        for meta in annotation.__metadata__:
            visit_name = getattr(type(meta), "__visit_name__", None)
            if visit_name == "xhtml":
                return is_list, XHTML, "xhtml", None
            if isinstance(visit_name, str):
                return is_list, PRIMITIVE, visit_name, None
        # e.g. uuid, annotated with pydantic's own UuidVersion only
        return is_list, PRIMITIVE, "string", None
    if isinstance(annotation, type) and issubclass(annotation, FhirBase):
        model = annotation.get_model_klass()
        if model.has_resource_base():
            return is_list, RESOURCE, model.get_resource_type(), None
        return is_list, COMPLEX, model.get_resource_type(), model
    raise TypeError(f"cannot map the annotation of {where}: {annotation!r}")
