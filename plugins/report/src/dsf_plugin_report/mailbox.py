"""Writing a resource by conditional update on its identifier: one living resource, a new version each time."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlencode

from dsf_core.api import FhirClient

__all__ = ["put_by_identifier"]


async def put_by_identifier(client: FhirClient, resource: dict[str, Any], system: str, value: str) -> str:
    """``PUT <Type>?identifier=system|value`` (created when nothing matches); returns ``<Type>/<id>/_history/<v>``.

    Sent as a one-entry transaction, the FHIR way of a conditional update, so any refusal is an error.
    """
    type_ = str(resource["resourceType"])
    url = f"{type_}?{urlencode({'identifier': f'{system}|{value}'})}"
    reply = await client.transaction({
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [{"resource": resource, "request": {"method": "PUT", "url": url}}],
    })
    entries = reply.get("entry") or [{}]
    location = str((entries[0].get("response") or {}).get("location") or "")
    match = re.search(rf"(?:^|/)({type_}/[A-Za-z0-9\-.]{{1,64}}(?:/_history/[^/?#]+)?)/?$", location)
    if match is None:
        raise ValueError(f"the conditional update of {type_} {system}|{value} answered no location ({location!r})")
    return match.group(1)
