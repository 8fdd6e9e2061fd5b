"""What every interaction needs to know about the request, without HTTP."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from dsf_core.fhir.authz.identity import Identity
from dsf_core.fhir.storage.store import Store, Stored


@dataclass(frozen=True)
class Ctx:
    store: Store
    identity: Identity
    local_identifier: str
    base_url: str
    mode: Literal["dsf", "store"] = "dsf"
    page_count: int = 20
    max_count: int = 1000

    @property
    def dsf_rules(self) -> bool:
        return self.mode == "dsf"


@dataclass(frozen=True)
class WriteResult:
    """Outcome of create/update/delete: the HTTP layer turns it into status + body."""

    status: int  # 200, 201, 204
    stored: Stored | None
    message: str = ""
