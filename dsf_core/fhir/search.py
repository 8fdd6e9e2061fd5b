"""FHIR search: query parameters → a parsed request → SQL over the search index.

Parsing knows the FHIR rules (modifiers, prefixes, OR by comma, AND by repetition,
control parameters); compiling turns each criterion into an ``EXISTS`` over
``search_index`` so SQLite and PostgreSQL run identical SQL.  Read-access filtering
is a clause handed in by the caller (``dsf_core.fhir.authz.access``), so totals are
per identity.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import ColumnElement, Select, and_, exists, false, func, not_, or_, select, true
from sqlalchemy.sql.elements import UnaryExpression
from sqlalchemy.sql.selectable import NamedFromClause as Alias

from dsf_core.errors import InvalidRequest, UnsupportedParameter
from dsf_core.fhir import numbers
from dsf_core.fhir.dates import DateError, date_range
from dsf_core.fhir.indexing import normalize, parse_reference
from dsf_core.fhir.search_params import INCLUDES, SearchParam, is_internal, params_for
from dsf_core.fhir.storage.schema import resources, search_index
from dsf_core.fhir.storage.store import RESOURCE_COLUMNS, ReadTx, Stored

# Aliases are built once: aliasing a table per query costs more than running the query.
_A_CI = search_index.alias("ci")
_A_CV = search_index.alias("cv")
_A_IE = search_index.alias("ie")
_A_LI = search_index.alias("li")
_A_LT = resources.alias("lt")
_A_LTI = search_index.alias("lti")
_A_RI = search_index.alias("ri")
_A_SI = search_index.alias("si")
_A_SS = search_index.alias("ss")


# Parameters that steer the search rather than filter it.
CONTROL = frozenset({"_count", "_page", "_sort", "_include", "_revinclude", "_summary", "_format", "_pretty", "_elements"})
SPECIAL = frozenset({"_id", "_lastUpdated"})
MODIFIERS: dict[str, set[str | None]] = {
    "token": {None, "not"},
    "string": {None, "exact", "contains"},
    "uri": {None, "below", "exact"},
    "reference": {None, "identifier"},
    "date": {None},
    "quantity": {None},
}
_PREFIX = re.compile(r"^(eq|ne|gt|ge|lt|le|sa|eb|ap)?(.*)$")


@dataclass(frozen=True)
class Criterion:
    name: str
    modifier: str | None
    values: tuple[str, ...]  # OR-ed


@dataclass(frozen=True)
class SearchRequest:
    type: str
    criteria: tuple[Criterion, ...] = ()
    count: int = 20
    page: int = 1
    sort: tuple[tuple[str, bool], ...] = ()  # (name, descending)
    includes: tuple[tuple[str, str], ...] = ()
    revincludes: tuple[tuple[str, str], ...] = ()
    summary_count: bool = False
    unsupported: tuple[str, ...] = ()
    # parameters as given, for the self link (control ones without paging)
    echo: tuple[tuple[str, str], ...] = ()
    elements: tuple[str, ...] = ()  # _elements: names, or Type.name for included types


@dataclass
class SearchResult:
    total: int
    matches: list[Stored] = field(default_factory=list)
    included: list[Stored] = field(default_factory=list)


_ELEMENT = re.compile(r"^(?:[A-Z][A-Za-z]+\.)?[a-z][A-Za-z0-9]*$")


def parse_elements(value: str) -> tuple[str, ...]:
    """``_elements=a,b,Type.c``: top-level element names (``Type.`` for another type in the Bundle)."""
    names = tuple(v.strip() for v in value.split(",") if v.strip())
    for name in names:
        if not _ELEMENT.match(name):
            raise InvalidRequest(f"_elements: {name!r} is not an element name", expression=["_elements"])
    return names


def _int(name: str, value: str, minimum: int) -> int:
    try:
        number = int(value)
    except ValueError:
        raise InvalidRequest(f"{name} must be an integer, got {value!r}") from None
    if number < minimum:
        raise InvalidRequest(f"{name} must be >= {minimum}, got {number}")
    return number


def parse_search(
    type_: str,
    params: Sequence[tuple[str, str]],
    *,
    strict: bool,
    default_count: int = 20,
    max_count: int = 1000,
) -> SearchRequest:
    """Parse query parameters of ``GET [type]?...``; unknown parameters are errors only when strict."""
    registry = params_for(type_)
    criteria: list[Criterion] = []
    unsupported: list[str] = []
    count, page, summary_count = default_count, 1, False
    elements: tuple[str, ...] = ()
    sort: list[tuple[str, bool]] = []
    includes: list[tuple[str, str]] = []
    revincludes: list[tuple[str, str]] = []
    echo: list[tuple[str, str]] = []

    def reject(message: str, raw: str) -> None:
        if strict:
            raise UnsupportedParameter(message)
        unsupported.append(raw)

    for raw_name, value in params:
        name, _, modifier = raw_name.partition(":")
        mod = modifier or None
        if name in CONTROL:
            if name == "_count":
                count = min(_int("_count", value, 0), max_count)
                value = str(count)  # links carry the page size in effect
            elif name == "_elements":
                elements += parse_elements(value)
            elif name == "_page":
                page = _int("_page", value, 1)
            elif name == "_summary":
                if value == "count":
                    summary_count = True
                elif value not in ("false", "true", "data", "text"):
                    reject(f"unsupported _summary value {value!r}", f"_summary={value}")
            elif name == "_sort":
                for item in value.split(","):
                    item = item.strip()
                    desc = item.startswith("-")
                    key = item[1:] if desc else item
                    if key in ("_id", "_lastUpdated") or (key in registry and not is_internal(key)):
                        sort.append((key, desc))
                    else:
                        reject(f"unsupported _sort parameter {key!r} for {type_}", f"_sort={item}")
            elif name in ("_include", "_revinclude"):
                parts = value.split(":")
                pair = (parts[0], parts[1]) if len(parts) >= 2 else None
                if pair is None or pair not in INCLUDES or (name == "_include" and pair[0] != type_):
                    reject(f"unsupported {name} value {value!r}", f"{name}={value}")
                elif name == "_include":
                    includes.append(pair)
                else:
                    revincludes.append(pair)
            if name not in ("_page", "_format", "_pretty"):
                echo.append((raw_name, value))
            continue
        if name in SPECIAL:
            if mod is not None:
                reject(f"modifier :{mod} is not supported for {name}", raw_name)
                continue
            criteria.append(Criterion(name, None, tuple(v for v in value.split(",") if v)))
            echo.append((raw_name, value))
            continue
        param = registry.get(name)
        if param is None or is_internal(name):
            reject(f"unsupported search parameter {name!r} for {type_}", raw_name)
            continue
        if mod not in MODIFIERS[param.type]:
            reject(f"unsupported modifier :{mod} for {param.type} parameter {name!r}", raw_name)
            continue
        values = tuple(_split_values(value))
        if not values:
            continue
        criteria.append(Criterion(name, mod, values))
        echo.append((raw_name, value))
    return SearchRequest(
        type_, tuple(criteria), count, page, tuple(sort), tuple(includes), tuple(revincludes), summary_count,
        tuple(unsupported), tuple(echo), elements,
    )


def _split_values(value: str) -> list[str]:
    """Split OR-ed values on commas not escaped with a backslash."""
    parts: list[str] = []
    current: list[str] = []
    escaped = False
    for ch in value:
        if escaped:
            current.append(ch)
            escaped = False
        elif ch == "\\":
            escaped = True
        elif ch == ",":
            parts.append("".join(current))
            current = []
        else:
            current.append(ch)
    parts.append("".join(current))
    return [p for p in parts if p != ""]


# --- compiling ---------------------------------------------------------------------


def _like_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _range_condition(
    lo_col: ColumnElement[int], hi_col: ColumnElement[int], prefix: str, low: int, high: int
) -> ColumnElement[bool]:
    """A stored inclusive range ``[lo_col, hi_col]`` against a searched one ``[low, high]`` (FHIR prefixes)."""
    if prefix == "eq":
        return and_(lo_col >= low, hi_col <= high)
    if prefix == "ne":
        return or_(lo_col < low, hi_col > high)
    if prefix == "ap":
        return and_(lo_col <= high, hi_col >= low)
    if prefix in ("gt", "sa"):
        return hi_col > high if prefix == "gt" else lo_col > high
    if prefix == "ge":
        return hi_col >= low
    if prefix in ("lt", "eb"):
        return lo_col < low if prefix == "lt" else hi_col < low
    return lo_col <= high  # le


def _prefixed(raw: str) -> tuple[str, str]:
    match = _PREFIX.match(raw)
    assert match is not None
    return match.group(1) or "eq", match.group(2)


def _date_condition(lo_col: ColumnElement[int], hi_col: ColumnElement[int], raw: str) -> ColumnElement[bool]:
    prefix, value = _prefixed(raw)
    if prefix == "ap":
        raise InvalidRequest("the prefix ap is not supported for dates")
    # An unencoded "+" of a time zone arrives as a space; take it back rather than failing.
    try:
        low, high = date_range(value.replace(" ", "+"))
    except DateError as exc:
        raise InvalidRequest(str(exc)) from None
    return _range_condition(lo_col, hi_col, prefix, low, high)


def _quantity_condition(si: Alias, raw: str) -> ColumnElement[bool]:
    """``[prefix]number``, ``[prefix]number||code`` (code or unit) or ``[prefix]number|system|code``."""
    prefix, value = _prefixed(raw)
    number_text, bar, unit = value.partition("|")
    try:
        number = numbers.parse_decimal(number_text)
    except numbers.NumberError as exc:
        raise InvalidRequest(f"{exc}; expected [prefix]number[|system|code]") from None
    low, high = numbers.search_range(prefix, number)
    condition = _range_condition(si.c.low, si.c.high, prefix, low, high)
    if not bar:
        return condition
    system, bar, code = unit.partition("|")
    if not bar:
        raise InvalidRequest(f"quantity {raw!r}: expected number|system|code or number||code")
    if system:  # a coded unit: system and code ("system|" alone: any unit of that system)
        return and_(condition, si.c.system == system, *([si.c.value == code] if code else []))
    if code:  # no system: the unit's code or its human-readable form
        return and_(condition, or_(si.c.value == code, si.c.norm == code))
    return condition


def _token_condition(si: Alias, raw: str) -> ColumnElement[bool]:
    if "|" in raw:
        system, code = raw.split("|", 1)
        if system == "":
            return and_(si.c.system.is_(None), si.c.value == code)
        if code == "":
            return si.c.system == system
        return and_(si.c.system == system, si.c.value == code)
    return si.c.value == raw


def _reference_condition(si: Alias, param: SearchParam, raw: str, base_url: str | None) -> ColumnElement[bool]:
    if base_url and raw.startswith(base_url.rstrip("/") + "/"):
        raw = raw[len(base_url.rstrip("/")) + 1 :]
    literal = parse_reference(raw)
    if literal is not None and literal.base is None:
        return and_(si.c.system == literal.type, si.c.value == literal.id)
    if raw.startswith("http://") or raw.startswith("https://"):
        if literal is not None:  # absolute literal reference of another server
            return si.c.norm == raw
        # canonical, optionally with |version
        return and_(si.c.system == "canonical", (si.c.value == raw) if "|" in raw else (si.c.norm == raw))
    if "/" not in raw:  # bare id
        return and_(si.c.value == raw, si.c.system.in_(param.targets) if param.targets else true())
    raise InvalidRequest(f"not a reference: {raw!r}")


def _value_conditions(si: Alias, param: SearchParam, c: Criterion, base_url: str | None) -> list[ColumnElement[bool]]:
    """One condition on an index row per OR-ed value."""
    conditions: list[ColumnElement[bool]] = []
    for raw in c.values:
        if param.type == "token" or c.modifier == "identifier":
            conditions.append(_token_condition(si, raw))
        elif param.type == "string":
            if c.modifier == "exact":
                conditions.append(si.c.value == raw)
            elif c.modifier == "contains":
                conditions.append(si.c.norm.like("%" + _like_escape(normalize(raw)) + "%", escape="\\"))
            else:
                conditions.append(si.c.norm.like(_like_escape(normalize(raw)) + "%", escape="\\"))
        elif param.type == "uri":
            if c.modifier == "below":
                conditions.append(si.c.value.like(_like_escape(raw) + "%", escape="\\"))
            elif "|" in raw or c.modifier == "exact":
                conditions.append(si.c.value == raw)
            else:
                conditions.append(si.c.norm == raw)
        elif param.type == "reference":
            conditions.append(_reference_condition(si, param, raw, base_url))
        elif param.type == "date":
            conditions.append(_date_condition(si.c.low, si.c.high, raw))
        elif param.type == "quantity":
            conditions.append(_quantity_condition(si, raw))
    return conditions


def criterion_clause(type_: str, c: Criterion, base_url: str | None = None) -> ColumnElement[bool]:
    """One criterion as a WHERE clause on ``resources``; a bad value is a 400 naming the parameter."""
    try:
        return _criterion_clause(type_, c, base_url)
    except InvalidRequest as exc:
        raise InvalidRequest(f"search parameter {c.name!r}: {exc.message}", expression=[c.name]) from None


def _criterion_clause(type_: str, c: Criterion, base_url: str | None) -> ColumnElement[bool]:
    if c.name == "_id":
        return resources.c.id.in_(c.values)
    if c.name == "_lastUpdated":
        return or_(*(_date_condition(resources.c.last_updated, resources.c.last_updated, v) for v in c.values))
    param = params_for(type_)[c.name]
    si = _A_SI
    index_param = f"{c.name}:identifier" if c.modifier == "identifier" else c.name
    conditions = _value_conditions(si, param, c, base_url)
        # Correlated on rid only (the row's type is implied), so the probe uses the covering
    # (rid, param, value, system) index and a LIMITed page stops after its rows.
    match: ColumnElement[bool] = exists().where(
        si.c.rid == resources.c.rid, si.c.param == index_param, or_(*conditions)
    )
    if c.modifier == "identifier":
        # A literal reference matches too when the resource it points to has that identifier.
        lit = _A_LI
        target = _A_LT
        tid = _A_LTI
        match = or_(
            match,
            exists().where(
                lit.c.rid == resources.c.rid,
                lit.c.type == type_,
                lit.c.param == c.name,
                target.c.type == lit.c.system,
                target.c.id == lit.c.value,
                target.c.current,
                target.c.deleted == false(),
                exists().where(
                    tid.c.rid == target.c.rid,
                    tid.c.param == "identifier",
                    or_(*[_token_condition(tid, raw) for raw in c.values]),
                ),
            ),
        )
    return not_(match) if c.modifier == "not" else match


def _sort_key(type_: str, name: str, desc: bool) -> UnaryExpression[Any]:
    if name == "_lastUpdated":
        col: Any = resources.c.last_updated
    elif name == "_id":
        col = resources.c.id
    else:
        si = _A_SS
        param = params_for(type_)[name]
        target = si.c.low if param.type in ("date", "quantity") else func.coalesce(si.c.value, si.c.norm)
        agg = func.max(target) if desc else func.min(target)
        col = (
            select(agg)
            .where(si.c.rid == resources.c.rid, si.c.param == name)
            .scalar_subquery()
        )
    ordered: UnaryExpression[Any] = col.desc() if desc else col.asc()
    return ordered


def base_query(type_: str, where: Sequence[ColumnElement[bool]]) -> Select[Any]:
    return select(*RESOURCE_COLUMNS).where(
        resources.c.type == type_, resources.c.current, resources.c.deleted == false(), *where
    )


async def execute_search(
    tx: ReadTx,
    request: SearchRequest,
    access: Any,
    *,
    base_url: str | None = None,
    count_key: Any = None,
) -> SearchResult:
    """Run a parsed search.  ``access(type) -> clause | None`` filters what the identity may read.

    ``count_key`` (hashable: the criteria and who asks) lets an exact total be reused until the
    next write of the type, where the store can see every write (SQLite: one process).  Counting
    is the expensive half of a search over many matches; the page itself stops after its rows.
    """
    built = _STATEMENTS.get((count_key, request.type)) if count_key is not None else None
    if built is None:
        where = [criterion_clause(request.type, c, base_url) for c in request.criteria]
        own = access(request.type)
        if own is not None:
            where.append(own)
        count_stmt = select(func.count()).select_from(resources).where(
            resources.c.type == request.type, resources.c.current, resources.c.deleted == false(), *where
        )
        built = (where, count_stmt, {})
        if count_key is not None:
            if len(_STATEMENTS) > 2048:
                _STATEMENTS.clear()
            _STATEMENTS[(count_key, request.type)] = built
    where, count_stmt, pages = built
    counts = _count_cache(tx, request.type) if count_key is not None else None
    cached = counts.get(count_key) if counts is not None else None
    if cached is not None:
        total = int(cached)
    else:
        total = int((await tx.conn.execute(count_stmt)).scalar_one())
        if counts is not None:
            counts.put(count_key, total)
    result = SearchResult(total)
    if request.summary_count or request.count == 0:
        return result
    # Default order: oldest first by _lastUpdated, which the (type, current, deleted, last_updated)
    # index delivers without sorting, so a page stops after its rows.
    page_key = (request.sort, request.count, request.page)
    stmt = pages.get(page_key)
    if stmt is None:
        order = [_sort_key(request.type, name, desc) for name, desc in request.sort] or [resources.c.last_updated.asc()]
        order.append(resources.c.rid.asc())
        stmt = base_query(request.type, where).order_by(*order).limit(request.count).offset((request.page - 1) * request.count)
        if count_key is not None and len(pages) < 64:
            pages[page_key] = stmt
    result.matches = [Stored.from_row(r) for r in (await tx.conn.execute(stmt)).all()]
    if result.matches and (request.includes or request.revincludes):
        result.included = await _includes(tx, request, result.matches, access)
    return result


# Built statements by (criteria and who asks, type): constructing SQLAlchemy expressions costs more
# than running an indexed page query.  Statements are immutable; the dict is bounded.
_STATEMENTS: dict[Any, tuple[list[ColumnElement[bool]], Select[Any], dict[Any, Select[Any]]]] = {}


def _count_cache(tx: ReadTx, type_: str) -> Any:
    # Only where every write invalidates promptly and the total depends on rows of this type
    # alone: a Binary's visibility follows other resources.
    if not tx.store.exact_invalidation or type_ == "Binary":
        return None
    return tx.store.type_cache(f"count:{type_}", type_)


async def _includes(tx: ReadTx, request: SearchRequest, matches: list[Stored], access: Any) -> list[Stored]:
    rids = [m.rid for m in matches]
    ids = [m.id for m in matches]
    seen = {(m.type, m.id) for m in matches}
    found: list[Stored] = []
    for _source, param_name in request.includes:
        refs = (
            await tx.conn.execute(
                select(search_index.c.system, search_index.c.value).where(
                    search_index.c.rid.in_(rids), search_index.c.param == param_name
                )
            )
        ).all()
        targets: dict[str, set[str]] = {}
        pairs: list[tuple[str | None, str | None]] = [(r[0], r[1]) for r in refs]
        for system, value in pairs:
            if system and system != "canonical" and value:
                targets.setdefault(system, set()).add(value)
        canon = {value for system, value in pairs if system == "canonical" and value}
        for target_type, target_ids in targets.items():
            clause = access(target_type)
            stmt = base_query(target_type, [resources.c.id.in_(sorted(target_ids))] + ([clause] if clause is not None else []))
            found.extend(Stored.from_row(r) for r in (await tx.conn.execute(stmt)).all())
        if canon:
            # canonical references (Measure depends-on Library): match url or url|version
            for target_type in params_for(request.type)[param_name].targets:
                si = _A_CI
                clause = access(target_type)
                conds = []
                for c in canon:
                    url, _, version = c.partition("|")
                    sub: ColumnElement[bool] = exists().where(
                        si.c.rid == resources.c.rid, si.c.param == "url", si.c.value == url
                    )
                    if version:
                        sv = _A_CV
                        sub = and_(sub, exists().where(sv.c.rid == resources.c.rid, sv.c.param == "version", sv.c.value == version))
                    conds.append(sub)
                stmt = base_query(target_type, [or_(*conds)] + ([clause] if clause is not None else []))
                found.extend(Stored.from_row(r) for r in (await tx.conn.execute(stmt)).all())
    for source_type, param_name in request.revincludes:
        si = _A_RI
        clause = access(source_type)
        stmt = base_query(
            source_type,
            [
                exists().where(
                    si.c.rid == resources.c.rid,
                    si.c.param == param_name,
                    si.c.system == request.type,
                    si.c.value.in_(ids),
                )
            ]
            + ([clause] if clause is not None else []),
        )
        found.extend(Stored.from_row(r) for r in (await tx.conn.execute(stmt)).all())
    unique: list[Stored] = []
    for s in found:
        if (s.type, s.id) not in seen:
            seen.add((s.type, s.id))
            unique.append(s)
    return unique


async def find(tx: ReadTx, type_: str, params: Sequence[tuple[str, str]], *, limit: int = 100) -> list[Stored]:
    """Internal lookup without read-access filtering (authorization rules, conditional requests)."""
    request = parse_search(type_, params, strict=True, default_count=limit, max_count=limit)
    where = [criterion_clause(type_, c) for c in request.criteria]
    stmt = base_query(type_, where).order_by(resources.c.rid).limit(limit)
    return [Stored.from_row(r) for r in (await tx.conn.execute(stmt)).all()]


async def find_internal(tx: ReadTx, type_: str, clauses: Sequence[ColumnElement[bool]], *, limit: int = 100) -> list[Stored]:
    stmt = base_query(type_, clauses).order_by(resources.c.rid).limit(limit)
    return [Stored.from_row(r) for r in (await tx.conn.execute(stmt)).all()]


def index_equals(type_: str, param: str, value: str, system: str | None = None) -> ColumnElement[bool]:
    """A clause: the resource has an index row ``param`` with this value (and system, if given)."""
    si = _A_IE
    conds = [si.c.rid == resources.c.rid, si.c.type == type_, si.c.param == param, si.c.value == value]
    if system is not None:
        conds.append(si.c.system == system)
    return exists().where(*conds)
