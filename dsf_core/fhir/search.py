"""FHIR search: a parsed request (``search_request``) → SQL over the search index.

Compiling turns each criterion into an ``EXISTS`` over ``search_index`` so SQLite and
PostgreSQL run identical SQL (exceptions: ``_count_statement``, and SQLite cutting pages to
``_elements`` itself); a criterion with few index rows drives the search instead (``rid IN`` its
rows).  Read-access filtering is a clause handed in by the caller (``dsf_core.fhir.authz.access``),
so totals are per identity.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from operator import itemgetter
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Select,
    and_,
    bindparam,
    exists,
    false,
    func,
    literal_column,
    not_,
    or_,
    select,
    true,
)
from sqlalchemy.sql.elements import UnaryExpression
from sqlalchemy.sql.selectable import NamedFromClause as Alias

from dsf_core.errors import InvalidRequest
from dsf_core.fhir import numbers
from dsf_core.fhir.dates import DateError, date_range
from dsf_core.fhir.indexing import normalize, parse_reference
from dsf_core.fhir.search_params import SearchParam, params_for
from dsf_core.fhir.search_request import SPECIAL, Criterion, SearchRequest, parse_search
from dsf_core.fhir.search_subset import page_columns, subset_projection, take_subsets
from dsf_core.fhir.storage.schema import resources, search_index
from dsf_core.fhir.storage.store import RESOURCE_COLUMNS, ReadTx, Stored

# The request side is re-exported: callers search through this module.
__all__ = [
    "Criterion",
    "SearchRequest",
    "SearchResult",
    "base_query",
    "criterion_clause",
    "execute_search",
    "find",
    "find_internal",
    "find_matches",
    "index_equals",
    "parse_search",
]

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


_PREFIX = re.compile(r"^(eq|ne|gt|ge|lt|le|sa|eb|ap)?(.*)$")


@dataclass
class SearchResult:
    total: int
    matches: list[Stored] = field(default_factory=list)
    included: list[Stored] = field(default_factory=list)
    after: str | None = None  # cursor for the next page (default order, full page)
    # rids of matches whose content the database already cut down to the request's _elements
    subsetted: frozenset[int] = frozenset()


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


def criterion_clause(
    type_: str, c: Criterion, base_url: str | None = None, *, per_row: bool = False
) -> ColumnElement[bool]:
    """One criterion as a WHERE clause on ``resources``; a bad value is a 400 naming the parameter.

    ``per_row``: the index probe stays a subquery checked row by row (for a page walked in
    _lastUpdated order); otherwise PostgreSQL may turn it into a semi-join over every match,
    the better plan for a count and the worse one for a page that stops after its rows.
    """
    try:
        return _criterion_clause(type_, c, base_url, per_row)
    except InvalidRequest as exc:
        raise InvalidRequest(f"search parameter {c.name!r}: {exc.message}", expression=[c.name]) from None


def _criterion_clause(type_: str, c: Criterion, base_url: str | None, per_row: bool) -> ColumnElement[bool]:
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
    probe: Select[Any] = select(literal_column("1")).where(
        si.c.rid == resources.c.rid, si.c.param == index_param, or_(*conditions)
    )
    # OFFSET 0 keeps PostgreSQL from pulling the subquery up into a join.
    match: ColumnElement[bool] = (probe.offset(0) if per_row else probe).exists()
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


# A criterion with few index rows drives the search: its rows are the candidates, each checked
# against the other criteria by rid.  Otherwise the resources of the type are walked in
# _lastUpdated order and each is checked (a page stops after its rows; a count visits them all).
DRIVE_LIMIT = 20_000
# A page is driven by a criterion (its index rows are the candidates) when it has at most
# PAGE_DRIVE_LIMIT rows, or at most PAGE_DRIVE_ROWS_PER_MATCH rows per match the page returns.
# Without an explicit _sort a driven page goes in rid order — the order its index rows already
# have — so it reads the driver's rids behind the cursor and probes resources only until the page
# is full (an evaluator's ``Condition?code=…&_count=1000``: 1,000 probes instead of walking every
# Condition).  With thousands of matches and small pages, walking the _lastUpdated index and
# stopping after the page's rows is faster (the mailbox's Task?status=requested&_count=20 with
# 10,000 requested Tasks).  rid order is insertion order, which _lastUpdated order is too.
PAGE_DRIVE_LIMIT = 200
PAGE_DRIVE_ROWS_PER_MATCH = 20
_A_DR = search_index.alias("dr")


@dataclass
class _Built:
    """The statements of one search (criteria and who asks), reused until evicted."""

    clauses: list[ColumnElement[bool]]  # per criterion, on ``resources``
    row_clauses: list[ColumnElement[bool]]  # the same, probed row by row (pages)
    own: ColumnElement[bool] | None  # read access
    drivers: dict[int, Select[Any]]  # criterion position -> SELECT rid of its index rows
    counts: dict[int | str | None, Select[Any]] = field(default_factory=dict)  # by driver (None: walk)
    pages: dict[Any, Select[Any]] = field(default_factory=dict)


def _build(request: SearchRequest, access: Any, base_url: str | None) -> _Built:
    clauses = [criterion_clause(request.type, c, base_url) for c in request.criteria]
    row_clauses = [criterion_clause(request.type, c, base_url, per_row=True) for c in request.criteria]
    drivers: dict[int, Select[Any]] = {}
    for position, c in enumerate(request.criteria):
        if c.name in SPECIAL or c.modifier in ("not", "identifier"):
            continue
        dr = _A_DR
        conditions = _value_conditions(dr, params_for(request.type)[c.name], c, base_url)
        drivers[position] = select(dr.c.rid).where(dr.c.type == request.type, dr.c.param == c.name, or_(*conditions))
    return _Built(clauses, row_clauses, access(request.type), drivers)


def _where(
    built: _Built, type_: str, driver: int | None, *, page: bool = False, after_rid: bool = False
) -> list[ColumnElement[bool]]:
    """Every criterion on ``resources``; a driver replaces its own clause by ``rid IN (its rows)``.

    Index rows exist only for current, undeleted versions, so a driven search needs no type,
    current or deleted condition, and without them the only way in is the driver's rids.
    ``after_rid``: only the driver's rows behind the ``after_rid`` parameter (a page in rid order).
    """
    access = [built.own] if built.own is not None else []
    clauses = built.row_clauses if page else built.clauses
    if driver is None:
        return [resources.c.type == type_, resources.c.current, resources.c.deleted == false(), *clauses, *access]
    others = [clause for position, clause in enumerate(clauses) if position != driver]
    rows = built.drivers[driver]
    if after_rid:
        rows = rows.where(_A_DR.c.rid > bindparam("after_rid"))
    return [resources.c.rid.in_(rows), *others, *access]


# Equality lookups are covered by the (type, param, value, system) index; try them first, so the
# range and prefix criteria are probed (if at all) only up to the best count found so far.
_PROBE_ORDER = {"token": 0, "reference": 0, "uri": 1, "string": 2, "date": 3, "quantity": 3}


async def _choose_driver(tx: ReadTx, built: _Built, request: SearchRequest) -> tuple[int | None, int | None]:
    """The criterion with the fewest index rows, if it has at most DRIVE_LIMIT (and that number)."""
    registry = params_for(request.type)
    order = sorted(built.drivers, key=lambda p: (_PROBE_ORDER[registry[request.criteria[p].name].type], p))
    best: tuple[int | None, int | None] = (None, None)
    for position in order:
        limit = DRIVE_LIMIT if best[1] is None else best[1] - 1
        if limit < 0:
            break
        probe = select(func.count()).select_from(built.drivers[position].limit(limit + 1).subquery())
        found = int((await tx.conn.execute(probe)).scalar_one())
        if found <= limit:
            best = (position, found)
    return best


def _count_statement(built: _Built, type_: str, driver: int | None, dialect: str) -> Select[Any]:
    key: int | str | None = driver
    if driver is None and dialect == "postgresql" and built.own is None and len(built.clauses) == 1 and built.drivers:
        # One criterion with many matches, nothing else to check: PostgreSQL counts the distinct
        # rids of its rows in the covering index (a hash of rids) several times faster than it
        # joins them to the resources.  SQLite sorts them for DISTINCT, slower than its walk.
        key = "index"
    stmt = built.counts.get(key)
    if stmt is None:
        if key == "index":
            rows = next(iter(built.drivers.values()))
            stmt = select(func.count()).select_from(rows.distinct().subquery())
        else:
            stmt = select(func.count()).select_from(resources).where(*_where(built, type_, driver))
        built.counts[key] = stmt
    return stmt


async def execute_search(
    tx: ReadTx,
    request: SearchRequest,
    access: Any,
    *,
    base_url: str | None = None,
    count_key: Any = None,
) -> SearchResult:
    """Run a parsed search.  ``access(type) -> clause | None`` filters what the identity may read.

    ``count_key`` (hashable: the criteria and who asks) lets an exact total (and the choice of
    driver) be reused until the next write of the type, where the store can see every write
    (SQLite: one process).  Counting is the expensive half of a search over many matches.
    """
    statements_key = (count_key, request.type, tx.dialect)
    built = _STATEMENTS.get(statements_key) if count_key is not None else None
    if built is None:
        built = _build(request, access, base_url)
        if count_key is not None:
            if len(_STATEMENTS) > 2048:
                _STATEMENTS.clear()
            _STATEMENTS[statements_key] = built
    counts = _count_cache(tx, request.type) if count_key is not None else None
    cached = counts.get(count_key) if counts is not None else None
    if cached is not None:
        total, driver, rows = cached
    else:
        driver, rows = await _choose_driver(tx, built, request)
        if rows == 0:
            total = 0
        else:
            total = int((await tx.conn.execute(_count_statement(built, request.type, driver, tx.dialect))).scalar_one())
        if counts is not None:
            counts.put(count_key, (total, driver, rows))
    result = SearchResult(total)
    if request.summary_count or request.count == 0 or total <= (request.page - 1) * request.count:
        return result
    if rows is not None and rows > max(PAGE_DRIVE_LIMIT, PAGE_DRIVE_ROWS_PER_MATCH * request.count):
        driver = None
    # Behind a cursor (our next links, default order) a page starts where the last one ended
    # instead of skipping every earlier match again.
    cursor = request.after if not request.sort else None
    by_rid = driver is not None and not request.sort
    projection = subset_projection(tx.dialect, request)
    page_key = (driver, request.sort, request.count, None if cursor else request.page, projection)
    stmt = built.pages.get(page_key)
    if stmt is None:
        if by_rid:
            assert driver is not None
            where = _where(built, request.type, driver, page=True, after_rid=bool(cursor))
            stmt = select(*page_columns(projection)).where(*where).order_by(resources.c.rid.asc()).limit(request.count)
        else:
            # Walking: oldest first by _lastUpdated, which the (type, current, deleted,
            # last_updated) index delivers without sorting, so a page stops after its rows.
            # Driven with a _sort: the matches are sorted.
            default = resources.c.last_updated if driver is None else resources.c.last_updated + 0
            order = [_sort_key(request.type, name, desc) for name, desc in request.sort] or [default.asc()]
            order.append(resources.c.rid.asc())
            where = _where(built, request.type, driver, page=True)
            if cursor:
                lu: Any = bindparam("after_lu")
                rid: Any = bindparam("after_rid")
                where += [resources.c.last_updated >= lu, or_(resources.c.last_updated > lu, resources.c.rid > rid)]
            stmt = select(*page_columns(projection)).where(*where).order_by(*order).limit(request.count)
        if not cursor:
            stmt = stmt.offset((request.page - 1) * request.count)
        if count_key is not None and len(built.pages) < 64:
            built.pages[page_key] = stmt
    parameters: dict[str, int] = {}
    if cursor:
        parameters = {"after_rid": cursor[1]} if by_rid else {"after_lu": cursor[0], "after_rid": cursor[1]}
    page_rows = getattr(tx.conn, "all_raw", None)
    if page_rows is not None and count_key is not None:  # SQLite's fast path for cached statements
        columns, found = await page_rows(stmt, parameters)
        if columns == _STORED_FIELDS:
            result.matches = [Stored(*row) for row in found]
        else:
            pick = itemgetter(*(columns.index(name) for name in _STORED_FIELDS))
            result.matches = [Stored(*pick(row)) for row in found]
    else:
        result.matches = [Stored.from_row(r) for r in (await tx.conn.execute(stmt, parameters)).all()]
    if projection is not None:
        result.matches, result.subsetted = take_subsets(result.matches)
    if not request.sort and len(result.matches) == request.count:
        last = result.matches[-1]
        result.after = f"{last.last_updated}.{last.rid}"
    if result.matches and (request.includes or request.revincludes):
        result.included = await _includes(tx, request, result.matches, access)
    return result


#: Stored's fields in order, as result columns are named.
_STORED_FIELDS = tuple(f.name for f in fields(Stored))


# Built statements by (criteria and who asks, type): constructing SQLAlchemy expressions costs more
# than running an indexed page query.  Statements are immutable; the dict is bounded.
_STATEMENTS: dict[Any, _Built] = {}


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
    return await find_matches(tx, request, limit=limit)


async def find_matches(
    tx: ReadTx, request: SearchRequest, *, base_url: str | None = None, limit: int = 100
) -> list[Stored]:
    """The first matches of a parsed request by row order, without read-access filtering.

    Driven by a criterion with few index rows like a search, so a conditional request on a
    large store does not walk every resource of the type.
    """
    built = _build(request, lambda _type: None, base_url)
    driver, rows = await _choose_driver(tx, built, request)
    if rows == 0:
        return []
    stmt = select(*RESOURCE_COLUMNS).where(*_where(built, request.type, driver, page=True))
    return [Stored.from_row(r) for r in (await tx.conn.execute(stmt.order_by(resources.c.rid).limit(limit))).all()]


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
