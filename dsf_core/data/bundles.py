"""Generated data as FHIR transaction Bundles: whole, split for loading, or streamed to a file.

Every entry is ``PUT <Type>/<id>`` with the resource, so loading is idempotent (a second load
writes new versions, never duplicates) on any server that allows update as create.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator
from typing import IO, Any

import orjson

from dsf_core.data.synthetic import DataError, PatientGroup, Resource

__all__ = ["put_entry", "transaction_bundle", "transaction_bundles", "write_transaction"]

_HEAD = b'{"resourceType":"Bundle","type":"transaction","entry":[\n'
_TAIL = b"\n]}\n"


def put_entry(resource: Resource) -> dict[str, Any]:
    """The transaction entry that writes *resource* under its own id."""
    return {"resource": resource, "request": {"method": "PUT", "url": f"{resource['resourceType']}/{resource['id']}"}}


def transaction_bundle(resources: Iterable[Resource]) -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": "transaction", "entry": [put_entry(r) for r in resources]}


def transaction_bundles(groups: Iterable[PatientGroup], patients_per_bundle: int) -> Iterator[dict[str, Any]]:
    """One transaction Bundle per *patients_per_bundle* patients; a patient's resources are never split.

    A group holds the Medications it is the first to use, so every Bundle's references resolve
    within it or an earlier Bundle (servers that check referential integrity accept them in order).
    """
    if patients_per_bundle < 1:
        raise DataError(f"patients per bundle must be at least 1, got {patients_per_bundle}")
    batch: list[Resource] = []
    count = 0
    for group in groups:
        batch += group.resources
        count += 1
        if count == patients_per_bundle:
            yield transaction_bundle(batch)
            batch, count = [], 0
    if batch:
        yield transaction_bundle(batch)


def write_transaction(groups: Iterable[PatientGroup], out: IO[bytes]) -> Counter[str]:
    """Write one transaction Bundle of all *groups* to *out*, an entry per line, consuming one group at a time.

    Returns the number of resources written per type.
    """
    counts: Counter[str] = Counter()
    out.write(_HEAD)
    separator = b""
    for group in groups:
        for resource in group.resources:
            out.write(separator + orjson.dumps(put_entry(resource)))
            separator = b",\n"
            counts[resource["resourceType"]] += 1
    out.write(_TAIL)
    return counts
