"""Database schema of the mailbox, one for SQLite and PostgreSQL.

* ``resources`` — every version of every resource is a row (history).  ``current``
  marks the latest version of an id (a deletion is a version with ``deleted``), a
  partial unique index keeps exactly one current row per (type, id).
* ``search_index`` — rows extracted from the current version (``indexing.py``),
  replaced in the same transaction as the write.
* ``read_access`` — the read-access tags of each version (ALL / LOCAL / ORGANIZATION /
  ROLE), so read filtering happens in SQL and totals are per identity.
* ``blobs`` / ``blob_chunks`` — Binary payloads, streamed in and out and never held whole in
  memory: ``blobs.location`` says where each is, ``file`` (a file in the binary directory) or
  ``database`` (fixed-size ``blob_chunks`` rows; NULL in rows from before schema 3); see
  ``blobs.py``.
* ``store_info`` — facts about the store itself: ``store_id``, a random id made at creation,
  which a binary directory records so it is never shared by two databases.
* ``search_params_state`` — per resource type, the fingerprint of the search parameters its
  index rows were built with; a type whose parameters changed is re-indexed at start-up
  (``migrations.py``).
* ``schema_version`` — migrations applied at start-up.  2: ``search_params_state`` and
  ``ix_search_range`` (indexes added to existing tables are created by ``migrations.py``);
  3: ``blobs.location`` and ``store_info`` (columns added to existing tables too); 4: the value
  and norm indexes of ``search_index`` only over rows that have them (``ix_search_value_nn``,
  ``ix_search_norm_nn`` replace ``ix_search_value``, ``ix_search_norm``).
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    text,
)

SCHEMA_VERSION = 4

metadata = MetaData()

# SQLite only auto-increments INTEGER PRIMARY KEY columns.
_RowId = BigInteger().with_variant(Integer(), "sqlite")

resources = Table(
    "resources",
    metadata,
    Column("rid", _RowId, primary_key=True, autoincrement=True),
    Column("type", String(64), nullable=False),
    Column("id", String(64), nullable=False),
    Column("version", Integer, nullable=False),
    Column("last_updated", BigInteger, nullable=False),  # ms since epoch, UTC
    Column("deleted", Boolean, nullable=False),
    Column("current", Boolean, nullable=False),
    Column("method", String(8), nullable=False),  # POST, PUT, DELETE (history entries)
    Column("content", Text, nullable=True),  # FHIR JSON; NULL for deletions
    Column("blob_id", String(64), nullable=True),  # Binary payload
    UniqueConstraint("type", "id", "version", name="ux_resources_version"),
    Index(
        "ux_resources_current",
        "type",
        "id",
        unique=True,
        # The predicate must read exactly as SQLAlchemy renders ``resources.c.current`` per dialect,
        # or the planner will not use the partial index.
        sqlite_where=text("current = 1"),
        postgresql_where=text("current"),
    ),
    # search scans current rows of a type in _lastUpdated order without touching the table
    Index("ix_resources_type_lu", "type", "current", "deleted", "last_updated"),
    Index("ix_resources_lu", "last_updated"),
)

search_index = Table(
    "search_index",
    metadata,
    Column("rid", _RowId, nullable=False),
    Column("type", String(64), nullable=False),
    Column("param", String(64), nullable=False),
    Column("system", Text, nullable=True),
    Column("value", Text, nullable=True),
    Column("norm", Text, nullable=True),
    Column("low", BigInteger, nullable=True),
    Column("high", BigInteger, nullable=True),
    # rid last: the indexes cover "which rows have this value", so search never touches the table rows.
    # Only rows that have the value: most rows have no norm (tokens, references) and dates have
    # no value, and leaving them out makes writing a Task's index rows ~30 % cheaper. A search
    # compares the column (=, LIKE), which implies it is not NULL, so both planners use them.
    Index(
        "ix_search_value_nn",
        "type",
        "param",
        "value",
        "system",
        "rid",
        sqlite_where=text("value IS NOT NULL"),
        postgresql_where=text("value IS NOT NULL"),
    ),
    Index(
        "ix_search_norm_nn",
        "type",
        "param",
        "norm",
        "rid",
        sqlite_where=text("norm IS NOT NULL"),
        postgresql_where=text("norm IS NOT NULL"),
    ),
    Index("ix_search_rid", "rid", "param", "value", "system"),
    # dates and quantities: a range probe (Encounter?date=eq2024) reads the index, not the rows
    Index(
        "ix_search_range",
        "type",
        "param",
        "low",
        "high",
        "rid",
        sqlite_where=text("low IS NOT NULL"),
        postgresql_where=text("low IS NOT NULL"),
    ),
)

read_access = Table(
    "read_access",
    metadata,
    Column("rid", _RowId, nullable=False),
    Column("access", String(16), nullable=False),  # ALL, LOCAL, ORGANIZATION, ROLE
    Column("organization", Text, nullable=True),  # ORGANIZATION: organization identifier value
    Column("parent", Text, nullable=True),  # ROLE: parent organization identifier value
    Column("role_system", Text, nullable=True),
    Column("role_code", Text, nullable=True),
    Index("ix_read_access_rid", "rid"),
)

blobs = Table(
    "blobs",
    metadata,
    Column("blob_id", String(64), primary_key=True),
    Column("size", BigInteger, nullable=False),
    Column("chunk_size", Integer, nullable=False),  # 0 for a file
    # database payloads: false while the chunks stream in, true once a committed version names it;
    # a file's row is only written then
    Column("complete", Boolean, nullable=False),
    Column("created", BigInteger, nullable=False),
    Column("location", String(16), nullable=True),  # file | database (NULL: database, written before schema 3)
)

blob_chunks = Table(
    "blob_chunks",
    metadata,
    Column("blob_id", String(64), primary_key=True),
    Column("seq", Integer, primary_key=True),
    Column("data", LargeBinary, nullable=False),
)

store_info = Table(
    "store_info",
    metadata,
    Column("key", String(64), primary_key=True),
    Column("value", Text, nullable=False),
)

search_params_state = Table(
    "search_params_state",
    metadata,
    Column("type", String(64), primary_key=True),
    Column("fingerprint", String(64), nullable=False),
)

schema_version = Table(
    "schema_version",
    metadata,
    Column("version", Integer, primary_key=True),
    Column("applied", BigInteger, nullable=False),
)
