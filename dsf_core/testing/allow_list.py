"""Allow-list Bundles for tests (the builder lives in :mod:`dsf_core.network.allow_list`)."""

from dsf_core.network.allow_list import Member, allow_list_bundle

__all__ = ["Member", "allow_list_bundle"]
