"""What a development network is made of: a parent organisation and members with roles.

``OrgSpec`` is the input of :func:`dsf_core.network.init_network`; ``parse_org_spec`` reads the
``IDENTIFIER:ROLE[+ROLE...]`` form of ``dsf network init --org``.  Identifiers and roles are
checked here, before anything is written, so a typo never leaves half a network behind.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass


class NetworkError(ValueError):
    """A network cannot be created or loaded; the message names the file or the bad value."""


#: Codes of CodeSystem http://dsf.dev/fhir/CodeSystem/organization-role (DSF 2.x).
ORGANIZATION_ROLES: dict[str, str] = {
    "UAC": "Use-and-Access Committee",
    "COS": "Coordinating Site",
    "CRR": "Central Research Repository",
    "DIC": "Data Integration Center",
    "DMS": "Data Management Site",
    "DTS": "Data Transfer Site",
    "HRP": "Health Research Platform",
    "TTP": "Trusted Third Party",
    "AMS": "Allowlist Management Site",
    "ASP": "Analysis Service Provider",
    "SPR": "Service Provider Registry",
    "TSP": "Terminology Service Provider",
    "PPH": "Process Plugin Hub",
    "BIO": "Biobank",
}

# Identifier values become directory names (DIR/<identifier>/node.toml, DIR/pki/<identifier>/),
# so beside the DSF convention (the organisation's shortest FQDN) they must be safe file names.
# Underscores are allowed because the Java DSF test setups use names like Test_DIC_1.
_IDENTIFIER = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9_-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9_-]*[A-Za-z0-9])?)*$")
_MAX_IDENTIFIER = 253

#: Names inside the network directory that an organisation's directory must not shadow.
RESERVED_NAMES = frozenset({"pki", "network.toml", "network.json", "allow-list.json"})


@dataclass(frozen=True)
class OrgSpec:
    """One member of the network: identifier value, roles in the parent, optional display name."""

    identifier: str
    roles: tuple[str, ...]
    name: str | None = None

    @property
    def display_name(self) -> str:
        return self.name or self.identifier


DEFAULT_PARENT = "medizininformatik-initiative.de"

DEFAULT_ORGANIZATIONS: tuple[OrgSpec, ...] = (
    OrgSpec("hrp.test", ("HRP",)),
    OrgSpec("dms.test", ("DMS",)),
    OrgSpec("dic-1.test", ("DIC",)),
    OrgSpec("dic-2.test", ("DIC",)),
    OrgSpec("dic-3.test", ("DIC",)),
)


def check_identifier(value: str, what: str = "organization identifier") -> str:
    """Return *value* if it is a usable identifier value, else raise :class:`NetworkError`."""
    if not value:
        raise NetworkError(f"{what} must not be empty")
    if len(value) > _MAX_IDENTIFIER or not _IDENTIFIER.match(value):
        raise NetworkError(
            f"invalid {what} {value!r}: use a domain-like name of letters, digits, '-', '_' and dots "
            "(e.g. dic-1.test)"
        )
    if value.lower() in RESERVED_NAMES:
        raise NetworkError(f"invalid {what} {value!r}: the name is reserved for the network's own files")
    return value


def check_role(value: str, identifier: str) -> str:
    """The role code in upper case, or :class:`NetworkError` naming the known codes."""
    code = value.strip().upper()
    if code not in ORGANIZATION_ROLES:
        known = ", ".join(ORGANIZATION_ROLES)
        raise NetworkError(f"unknown role {value!r} for {identifier}: organization-role codes are {known}")
    return code


def normalize(spec: OrgSpec) -> OrgSpec:
    """Check identifier and roles of *spec*; roles come back upper-case."""
    identifier = check_identifier(spec.identifier)
    if not spec.roles:
        raise NetworkError(f"organization {identifier} needs at least one role (e.g. {identifier}:DIC)")
    roles = tuple(check_role(r, identifier) for r in spec.roles)
    duplicate = next((r for i, r in enumerate(roles) if r in roles[:i]), None)
    if duplicate is not None:
        raise NetworkError(f"role {duplicate} given twice for {identifier}")
    return OrgSpec(identifier, roles, spec.name)


def check_network(parent: str, organizations: Sequence[OrgSpec]) -> tuple[str, tuple[OrgSpec, ...]]:
    """Check a whole network: valid parent and members, no identifier used twice."""
    parent = check_identifier(parent, "parent organization identifier")
    if not organizations:
        raise NetworkError("a network needs at least one organization")
    checked = tuple(normalize(o) for o in organizations)
    seen: dict[str, str] = {parent.lower(): f"the parent organization {parent}"}
    for spec in checked:
        # Case-insensitively, because identifiers become directory names.
        key = spec.identifier.lower()
        if key in seen:
            raise NetworkError(f"organization identifier {spec.identifier!r} clashes with {seen[key]}")
        seen[key] = f"organization {spec.identifier}"
    return parent, checked


def parse_org_spec(text: str) -> OrgSpec:
    """Parse ``IDENTIFIER:ROLE[+ROLE...]`` (``dic-1.test:DIC``, ``b.test:HRP+DIC``)."""
    identifier, sep, roles = text.partition(":")
    identifier = identifier.strip()
    if not sep or not identifier or not roles.strip():
        raise NetworkError(f"--org {text!r}: expected IDENTIFIER:ROLE[+ROLE...], e.g. dic-1.test:DIC or b.test:HRP+DIC")
    parts = [r.strip() for r in roles.split("+")]
    if any(not r for r in parts):
        raise NetworkError(f"--org {text!r}: empty role; separate roles with '+', e.g. b.test:HRP+DIC")
    return normalize(OrgSpec(identifier, tuple(parts)))
