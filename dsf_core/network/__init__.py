"""A local multi-organisation DSF development network: its files, written and read back.

::

    from dsf_core.network import OrgSpec, init_network, load_network

    layout = init_network(tmp_path / "net", parent="p.test",
                          organizations=[OrgSpec("a.test", ("DIC",)), OrgSpec("b.test", ("HRP", "DIC"))])
    settings = load_settings(layout.organization("a.test").config)

``init_network`` writes a development CA, certificates, one allow list and one node config per
organisation plus the manifest ``network.toml`` (layout in :mod:`dsf_core.network.layout`);
``load_network`` reads the manifest back; ``set_data_stores`` points a node at local FHIR data
stores (``[data_stores.<name>]``).  ``dsf network init`` is the command-line face.
"""

from __future__ import annotations

from dsf_core.network.data_stores import set_data_stores
from dsf_core.network.layout import NetworkLayout, OrganizationLayout, load_network
from dsf_core.network.spec import (
    DEFAULT_ORGANIZATIONS,
    DEFAULT_PARENT,
    ORGANIZATION_ROLES,
    NetworkError,
    OrgSpec,
    parse_org_spec,
)
from dsf_core.network.writer import init_network

__all__ = [
    "DEFAULT_ORGANIZATIONS",
    "DEFAULT_PARENT",
    "ORGANIZATION_ROLES",
    "NetworkError",
    "NetworkLayout",
    "OrgSpec",
    "OrganizationLayout",
    "init_network",
    "load_network",
    "parse_org_spec",
    "set_data_stores",
]
