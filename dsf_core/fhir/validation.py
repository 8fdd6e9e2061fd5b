"""Structural validation of incoming resources (fhir.resources R4B) on write.

Models are built only to validate; what is stored and served is the client's JSON.
fhir.resources checks element names, cardinality of choice types, required
elements and primitive formats; DSF rules are checked in ``authz.rules``.
"""

from __future__ import annotations

import re
import types
import typing
from collections import OrderedDict
from collections.abc import Callable
from functools import cache
from typing import Any, Final

import orjson
import pydantic

from dsf_core.errors import InvalidRequest


@cache
def _model(resource_type: str) -> Any:
    from fhir.resources.R4B import get_fhir_model_class

    return get_fhir_model_class(resource_type)


def _location(loc: tuple[Any, ...], resource_type: str) -> str:
    path = resource_type
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else f".{part}"
    return path


# Resource types validated element by element with a cache of elements already found valid.
# Only types whose top-level elements are independent of each other qualify: no choice
# elements (value[x]) at the top, where "one of" spans several keys. A Task goes through the
# mailbox several times with most elements unchanged (requested → in-progress → completed);
# validating only what changed saves most of the ~1 ms a full model build costs.
_INCREMENTAL: Final = frozenset({"Task"})
_REQUIRED: Final = {"Task": ("status", "intent")}
_VALID_ELEMENTS: OrderedDict[bytes, None] = OrderedDict()
_CACHE_SIZE: Final = 8192


def _element_key(resource_type: str, name: str, value: Any) -> bytes:
    return resource_type.encode() + b"\x00" + name.encode() + b"\x00" + orjson.dumps(value, option=orjson.OPT_SORT_KEYS)


# --- shapes: an element with its free-text and date values stood in for -------------------
#
# Every Task a peer sends differs from the last in a few values only (business-key and
# correlation-key UUIDs, authoredOn), so keying the cache by the literal element would
# validate those elements every time.  The shape of an element replaces each value of a
# ``string``, ``dateTime``, ``instant`` or ``date`` element that is valid on its own by a
# stand-in, and keeps everything else literally.  fhir.resources checks such a value by its
# type alone, and the model-level checks (choice elements, required elements, nulls in
# lists) look at which keys are present, never at the values; so an element whose shape
# was found valid is valid whatever valid values stand in.  Models with any other
# validator are kept literally.  The stand-in is ``[]`` and a value that is not stood in
# for becomes ``[value]``, so no literal value can take the stand-in's place.

Shaper = Callable[[Any], Any]  # a value (never None) → its shape
_STRING_VALUE: Final = re.compile(r"[ \r\n\t\S]+")  # fhir_core.types.String; full match is stricter than its search


def _standard_validators(model: Any) -> bool:
    from fhir_core.fhirabstractmodel import FHIRAbstractModel

    def func(decorator: Any) -> Any:
        return getattr(decorator.func, "__func__", decorator.func)

    base = {name: func(d) for name, d in FHIRAbstractModel.__pydantic_decorators__.model_validators.items()}
    decorators = model.__pydantic_decorators__
    return (
        not decorators.field_validators
        and not decorators.validators
        and not decorators.root_validators
        and all(base.get(name) is func(d) for name, d in decorators.model_validators.items())
        and all(
            getattr(model, method) is getattr(FHIRAbstractModel, method)
            for method in ("_validate_one_of_many", "_validate_required_primitive_elements")
        )
    )


def _element_model(annotation: Any) -> Any:
    """The model class of a complex-type annotation, or None (primitives, polymorphic Resource)."""
    from fhir_core.types import FhirBase, FhirElementOrResourceBase

    if isinstance(annotation, type) and issubclass(annotation, FhirBase) and not issubclass(annotation, FhirElementOrResourceBase):
        return annotation.get_model_klass()
    return None


def _shape_string(value: Any) -> Any:
    return [] if isinstance(value, str) and _STRING_VALUE.fullmatch(value) else [value]


def _date_shaper(adapter: pydantic.TypeAdapter[Any]) -> Shaper:
    def shape(value: Any) -> Any:
        if not isinstance(value, str):
            return [value]
        try:
            adapter.validate_python(value)
        except pydantic.ValidationError:
            return [value]
        return []

    return shape


def _list_shaper(shape_item: Shaper) -> Shaper:
    def shape(value: Any) -> Any:
        return [None if item is None else shape_item(item) for item in value] if isinstance(value, list) else value

    return shape


def _field_shaper(field: Any) -> Shaper | None:
    """How a field's value is shaped; None: kept literally."""
    from fhir_core.types import Date, DateTime, Instant, String

    annotation = field.annotation
    if field.metadata:
        return None
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(args) != 1:
            return None
        annotation = args[0]
    if typing.get_origin(annotation) is list:
        model = _element_model(typing.get_args(annotation)[0])
        return _list_shaper(_model_shaper(model)) if model is not None else None
    model = _element_model(annotation)
    if model is not None:
        return _model_shaper(model)
    if typing.get_origin(annotation) is typing.Annotated:
        base, *metadata = typing.get_args(annotation)
        if len(metadata) == 1 and base is str and isinstance(metadata[0], String):
            return _shape_string
        if len(metadata) == 1 and isinstance(metadata[0], (DateTime, Instant, Date)):
            return _date_shaper(pydantic.TypeAdapter(annotation))
    return None


@cache
def _field_shapers(model: Any) -> dict[str, Shaper] | None:
    """JSON key → shaper of its value (keys kept literally left out); None: the model's validity may depend on values."""
    if not _standard_validators(model):
        return None
    shapers: dict[str, Shaper] = {}
    for name, field in model.model_fields.items():
        shaper = _field_shaper(field)
        if shaper is not None:
            shapers[name] = shapers[field.alias or name] = shaper
    return shapers


@cache
def _model_shaper(model: Any) -> Shaper:
    shapers: dict[str, Shaper] | None = None
    resolved = False

    def shape(value: Any) -> Any:
        nonlocal shapers, resolved
        if not resolved:  # on first use: element types refer to each other (Extension.extension)
            shapers, resolved = _field_shapers(model), True
        if shapers is None or not isinstance(value, dict):
            return value
        get = shapers.get
        out = {}
        for key, item in value.items():
            shaper = get(key)
            out[key] = item if shaper is None or item is None else shaper(item)
        return out

    return shape


def validate_structure(resource: dict[str, Any]) -> None:
    """Raise InvalidRequest naming every structural problem (at most ten)."""
    resource_type = resource.get("resourceType")
    if not isinstance(resource_type, str):
        raise InvalidRequest("resourceType missing")
    try:
        model = _model(resource_type)
    except (KeyError, ValueError, AttributeError):
        raise InvalidRequest(f"unknown resourceType {resource_type!r}") from None
    if resource_type in _INCREMENTAL:
        _validate_incrementally(model, resource, resource_type)
    else:
        _validate(model, resource, resource_type)


def _validate_incrementally(model: Any, resource: dict[str, Any], resource_type: str) -> None:
    shaped = _model_shaper(model)(resource)
    try:
        keys = {name: _element_key(resource_type, name, value) for name, value in shaped.items() if name != "resourceType"}
    except TypeError:  # not JSON-serialisable: let the model say what is wrong
        _validate(model, resource, resource_type)
        return
    required = _REQUIRED.get(resource_type, ())
    unknown = {name for name, key in keys.items() if key not in _VALID_ELEMENTS}
    if not unknown and all(name in resource for name in required):
        for key in keys.values():
            _VALID_ELEMENTS.move_to_end(key)
        return
    reduced = {"resourceType": resource_type}
    reduced.update({name: resource[name] for name in keys if name in unknown or name in required})
    _validate(model, reduced, resource_type)
    for name in unknown:
        _VALID_ELEMENTS[keys[name]] = None
    while len(_VALID_ELEMENTS) > _CACHE_SIZE:
        _VALID_ELEMENTS.popitem(last=False)


def _validate(model: Any, resource: dict[str, Any], resource_type: str) -> None:
    try:
        model.model_validate(resource)
    except pydantic.ValidationError as exc:
        problems = []
        expressions = []
        for err in exc.errors()[:10]:
            where = _location(tuple(err.get("loc", ())), resource_type)
            message = str(err.get("msg", "invalid"))
            if len(message) > 200:
                message = message[:200] + "…"
            problems.append(f"{where}: {message}")
            expressions.append(where)
        raise InvalidRequest("invalid " + resource_type + ": " + "; ".join(problems), expression=expressions) from None
