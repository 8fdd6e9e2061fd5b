"""Read access as SQL: which current resources an identity may see.

The clause is added to every search, read, history and include query, so totals and
pages are per identity.  Rules (as the Java DSF):

* Task — the local organisation sees Tasks addressed to it (restriction.recipient) and
  every organisation sees Tasks it requested.
* QuestionnaireResponse — local organisation only.
* Binary — readable exactly when the resource its ``securityContext`` references is.
* everything else — by read-access tag: ALL for everyone; LOCAL for the local
  organisation; ORGANIZATION for the named organisation; ROLE for members holding
  that role in that parent organisation.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from sqlalchemy import ColumnElement, Select, and_, bindparam, exists, false, or_, select, true

from dsf_core.fhir import codes
from dsf_core.fhir.authz.identity import Identity
from dsf_core.fhir.storage.schema import read_access, resources, search_index


def _tag_clause(identity: Identity, rid_column: Any) -> ColumnElement[bool]:
    ra = read_access.alias("ra")
    options: list[ColumnElement[bool]] = [ra.c.access == "ALL"]
    if identity.is_local:
        options.append(ra.c.access == "LOCAL")
    if identity.organization_identifier:
        options.append(and_(ra.c.access == "ORGANIZATION", ra.c.organization == identity.organization_identifier))
    for role in identity.roles:
        role_conds = [ra.c.access == "ROLE", ra.c.parent == role.parent, ra.c.role_code == role.code]
        if role.system is not None:
            role_conds.append(ra.c.role_system == role.system)
        options.append(and_(*role_conds))
    return exists().where(ra.c.rid == rid_column, or_(*options))


def _task_clause(identity: Identity) -> ColumnElement[bool]:
    if not identity.organization_identifier:
        return false()
    si = search_index.alias("ta")
    params = ["requester:identifier"] + (["_recipient:identifier"] if identity.is_local else [])
    return exists().where(
        si.c.rid == resources.c.rid,
        or_(*(si.c.param == p for p in params)),
        si.c.value == identity.organization_identifier,
        si.c.system == codes.ORGANIZATION_IDENTIFIER,
    )


def _binary_clause(identity: Identity) -> ColumnElement[bool]:
    si = search_index.alias("bs")
    target = resources.alias("bt")
    return exists().where(
        si.c.rid == resources.c.rid,
        si.c.param == "_securityContext",
        target.c.type == si.c.system,
        target.c.id == si.c.value,
        target.c.current,
        target.c.deleted == false(),
        _tag_clause(identity, target.c.rid),
    )


@lru_cache(maxsize=4096)
def access_clause(identity: Identity, type_: str) -> ColumnElement[bool] | None:
    """The WHERE clause limiting ``resources`` rows of a type to what the identity may read (None: all).

    Cached per identity and type: clauses are immutable, and building them costs more than the query.
    """
    if identity.unrestricted:
        return None
    if type_ == "Task":
        return _task_clause(identity)
    if type_ == "QuestionnaireResponse":
        return true() if identity.is_local else false()
    if type_ == "Binary":
        return _binary_clause(identity)
    return _tag_clause(identity, resources.c.rid)


@lru_cache(maxsize=4096)
def may_read_statement(identity: Identity, type_: str) -> Select[Any] | None:
    """``SELECT rid WHERE rid = :rid AND <access>`` for one stored row, or None when everything is readable."""
    clause = access_clause(identity, type_)
    if clause is None:
        return None
    return select(resources.c.rid).where(resources.c.rid == bindparam("rid"), clause)


def access_for(identity: Identity) -> Any:
    """``type -> clause`` for ``execute_search``."""
    return lambda type_: access_clause(identity, type_)


__all__ = ["access_clause", "access_for", "may_read_statement"]
