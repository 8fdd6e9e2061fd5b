"""At deployment: a DMS publishes its public key on its own mailbox (``ProcessPlugin.on_deployed``).

Only where ``dataReceive`` is active and a key is configured (as the Java plugin). A Bundle that
is already there stays when it holds the configured key; one with another key (the key was
changed) is replaced, so DICs never encrypt for a key the DMS no longer has.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from dsf_core.api import ProcessPluginApi
from dsf_plugin_data_transfer.keys import (
    PUBLIC_KEY_IDENTIFIER,
    PublicKeyBundleError,
    load_public_key,
    public_key_bundle,
    public_key_der,
    public_key_from_bundle,
)
from dsf_plugin_data_transfer.status import config_of

__all__ = ["RECEIVE_PROCESS", "publish_public_key"]

log = logging.getLogger("dsf.plugin.data_transfer")

RECEIVE_PROCESS = "medizininformatik-initiativede_dataReceive"


async def publish_public_key(api: ProcessPluginApi, active: Sequence[str]) -> None:
    if RECEIVE_PROCESS not in active:
        return
    key = load_public_key(config_of(api))
    if key is None:
        log.warning("%s is active but no DMS key is configured: no DIC can send data sets here", RECEIVE_PROCESS)
        return
    local = api.fhir.local()
    found = await local.search("Bundle", {"identifier": PUBLIC_KEY_IDENTIFIER})
    existing = [e["resource"] for e in found.get("entry", []) if e.get("resource", {}).get("resourceType") == "Bundle"]
    bundle = public_key_bundle(key, api.organization_identifier, api.now())
    if not existing:
        created = await local.create(bundle, if_none_exist=f"identifier={PUBLIC_KEY_IDENTIFIER}")
        log.info("DMS public key published as Bundle/%s", created.id)
        return
    try:
        if public_key_der(public_key_from_bundle(existing[0])) == public_key_der(key):
            log.info("DMS public key already published as Bundle/%s", existing[0].get("id"))
            return
    except PublicKeyBundleError as exc:
        log.warning("Bundle/%s does not hold a usable public key (%s)", existing[0].get("id"), exc)
    await local.update({**bundle, "id": existing[0]["id"]})
    log.warning("DMS public key changed: Bundle/%s now holds the configured key", existing[0]["id"])
