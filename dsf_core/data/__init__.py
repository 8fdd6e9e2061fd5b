"""Synthetic clinical data shaped like the MII Kerndatensatz, for tests, benchmarks and demos.

::

    from dsf_core.data import DatasetSpec, generate, patient_groups, transaction_bundles, write_transaction

    dataset = generate(DatasetSpec(patients=50, seed=7))         # small N: every resource in memory
    dataset.of_type("Condition")                                  # plain FHIR JSON dicts
    for bundle in transaction_bundles(dataset.groups, 10):        # PUT Type/id transactions to load
        ...
    with open("data.json", "wb") as out:                          # any N, bounded memory
        write_transaction(patient_groups(DatasetSpec(patients=100_000, seed=7)), out)

``dsf data generate`` is the command-line face (docs/data.md); the code tables are in
:mod:`dsf_core.data.vocabulary`.  This package builds data only: it imports nothing of the
server, the engine or the network.
"""

from __future__ import annotations

from dsf_core.data.bundles import put_entry, transaction_bundle, transaction_bundles, write_transaction
from dsf_core.data.synthetic import (
    REFERENCE_DATE,
    DataError,
    Dataset,
    DatasetSpec,
    PatientGroup,
    generate,
    patient_groups,
)

__all__ = [
    "REFERENCE_DATE",
    "DataError",
    "Dataset",
    "DatasetSpec",
    "PatientGroup",
    "generate",
    "patient_groups",
    "put_entry",
    "transaction_bundle",
    "transaction_bundles",
    "write_transaction",
]
