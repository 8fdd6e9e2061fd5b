"""New ids are time-ordered version-7 UUIDs in canonical text form, random after the time."""

from __future__ import annotations

import re
import time
import uuid

from dsf_core.fhir.ids import new_id

_CANONICAL = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")


def test_new_ids_are_version_7_uuids_with_the_creation_time_and_differ() -> None:
    before = time.time_ns() // 1_000_000
    ids = [new_id() for _ in range(5000)]
    after = time.time_ns() // 1_000_000
    assert len(set(ids)) == len(ids)
    for text in ids:
        assert _CANONICAL.match(text), text
        parsed = uuid.UUID(text)
        assert (parsed.variant, str(parsed)) == (uuid.RFC_4122, text)
        assert before <= parsed.int >> 80 <= after  # the first 48 bits: milliseconds since the epoch
    assert ids[0][:8] <= ids[-1][:8]  # ordered by time
