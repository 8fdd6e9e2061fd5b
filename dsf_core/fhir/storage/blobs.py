"""Binary payloads: one file each in a directory, or chunk rows in the database.

Where a payload lives is recorded per payload in ``blobs.location``: ``file`` — the file
``<binary_dir>/<blob_id[:2]>/<blob_id>``; ``database`` (NULL in rows written before schema 3) —
rows of ``blob_chunks``.  New payloads are files when the store has a ``binary_dir`` and chunk
rows otherwise; reads follow each payload's location, so the chunk rows of a database that had
no directory before stay readable after one is set.

Life of a payload:

1. :meth:`BlobStore.write` streams it in.  A file is written to ``incoming/<blob_id>.part`` by
   ``writev`` of the pieces as they came (no copy), about 1 MiB at a time, on the event loop: into
   the page cache that takes a fraction of a millisecond, no more than handing it to a thread and
   waiting for the GIL to come back (measured: the same CPU per upload, the loop never idle).
   ``fdatasync``, which waits for the disk, runs on a thread: every 64 MiB in the background, so
   that the last one finds little left to write; then the file is renamed into place and its
   directory fsync'd.  Chunk rows are committed
   one by one under a ``blobs`` row with ``complete`` false.  Either way the database does not
   list the payload yet.
2. :meth:`BlobStore.link` runs in the write transaction of the resource version that names the
   payload: a file's ``blobs`` row is inserted there, a database payload's ``complete`` set.  A
   payload is therefore visible exactly when its resource version commits.
3. A write that fails or is refused calls :meth:`BlobStore.discard`: temp file, file and rows go.
4. ``$permanent-delete`` deletes the rows in its transaction (:meth:`BlobStore.delete_in`) and
   unlinks the files after the commit, in the background: dropping a GiB file's pages from the
   page cache takes the kernel most of a second, which the answer need not wait for
   (:meth:`BlobStore.close` does).

A crash leaves at most a temp file, a file without ``blobs`` row (crash between rename and
commit, or between a permanent delete's commit and its unlink) or an incomplete database
payload.  :meth:`BlobStore.sweep` removes them at start-up: on SQLite all of them (one process
owns the store), on PostgreSQL those untouched for :data:`STALE_SECONDS` (another worker may be
writing them right now).

A directory belongs to one database: its ``STORE_ID`` file names the ``store_info`` id of that
database, and a directory holding payloads of another database is refused at start (its sweep
would take them all for orphans).
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
import uuid
from collections.abc import AsyncIterable, AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, TypeVar

from sqlalchemy import and_, delete, false, insert, select, update

from dsf_core.errors import DsfError
from dsf_core.fhir.storage.schema import blob_chunks, blobs

if TYPE_CHECKING:
    from dsf_core.fhir.storage.store import Store, WriteTx

log = logging.getLogger(__name__)

FILE = "file"
DATABASE = "database"
#: Bytes per file write, per file read and per chunk row.
PIECE = 1024 * 1024
#: Written bytes between background ``fdatasync`` calls of a file being uploaded.
SYNC_EVERY = 64 * PIECE
#: On PostgreSQL, leftovers untouched this long are taken for a crashed worker's (uploads of
#: 200 GB over a slow line take hours).
STALE_SECONDS = 24 * 3600.0
_INCOMING = "incoming"
_MARKER = "STORE_ID"
_BATCH = 500
_IOV_MAX = 1024

T = TypeVar("T")


class BinaryStorageError(Exception):
    """The binary directory cannot be used with this database (raised at start-up)."""


class PayloadMissing(DsfError):
    """A Binary's payload is gone from where the database says it is (500)."""


@dataclass(frozen=True, slots=True)
class BlobInfo:
    """Where one linked payload is and how large it is."""

    blob_id: str
    size: int
    location: str  # FILE or DATABASE
    chunk_size: int
    path: Path | None  # the file of a FILE payload


def _run(fn: Callable[..., T], *args: Any) -> asyncio.Future[T]:
    """``fn(*args)`` on the default thread pool, as a future (callbacks can be added to it)."""
    return asyncio.get_running_loop().run_in_executor(None, fn, *args)


def _write_all(fd: int, pieces: list[bytes]) -> None:
    views = [memoryview(p) for p in pieces if p]
    while views:
        written = os.writev(fd, views[:_IOV_MAX])
        while written:  # a short write ends inside some piece
            if written >= len(views[0]):
                written -= len(views.pop(0))
            else:
                views[0], written = views[0][written:], 0


def _sync_and_close(fd: int) -> None:
    try:
        os.fdatasync(fd)
    finally:
        os.close(fd)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _after(futures: Sequence[asyncio.Future[Any] | None], cleanup: Callable[[], None]) -> None:
    """Run ``cleanup`` once every future (work on a thread) has finished: at once, or from a callback.

    A thread still syncing, closing or reading a descriptor must not see it closed (and reused)
    under it, and an interrupted request must not wait for the disk.
    """
    running = [f for f in futures if f is not None and not f.done()]
    for f in futures:
        if f is not None and f.done() and not f.cancelled():
            f.exception()  # retrieved: the error that interrupted us is being raised already
    if not running:
        cleanup()
        return
    gathered = asyncio.gather(*running, return_exceptions=True)
    gathered.add_done_callback(lambda _: cleanup())


class _FileWriter:
    """One payload streamed into a temp file and moved into place."""

    def __init__(self, temp: Path, final: Path) -> None:
        self.temp, self.final = temp, final
        self.size = 0
        self._fd = -1
        self._pieces: list[bytes] = []
        self._pending = 0
        self._sync: asyncio.Future[None] | None = None
        self._close: asyncio.Future[None] | None = None
        self._place: asyncio.Future[None] | None = None
        self._synced = 0

    async def open(self) -> None:
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC
        self._fd = await _run(os.open, self.temp, flags, 0o600)

    async def add(self, piece: bytes) -> None:
        if type(piece) is not bytes:  # a buffer the caller may fill again: keep a copy
            piece = bytes(piece)
        self._pieces.append(piece)
        self._pending += len(piece)
        if self._pending >= PIECE:
            await self._flush()

    async def _flush(self) -> None:
        pieces, self._pieces = self._pieces, []
        _write_all(self._fd, pieces)
        self.size += self._pending
        self._pending = 0
        if self.size - self._synced >= SYNC_EVERY and (self._sync is None or self._sync.done()):
            if self._sync is not None:
                await self._sync  # raises what the last one met
            self._synced = self.size
            self._sync = _run(os.fdatasync, self._fd)

    async def finish(self) -> int:
        """Write the rest, make it durable, move it into place; returns the size."""
        if self._pieces:
            await self._flush()
        if self._sync is not None:
            await self._sync
        self._close = _run(_sync_and_close, self._fd)
        await self._close
        self._place = _run(_place, self.temp, self.final)
        await self._place
        return self.size

    def abort(self) -> None:
        """Remove what was written (once the threads still at work on it are done)."""

        def cleanup() -> None:
            if self._fd >= 0 and self._close is None:
                os.close(self._fd)
            self._fd = -1
            for path in (self.temp, self.final):
                try:
                    path.unlink(missing_ok=True)
                except OSError as exc:
                    log.warning("could not remove %s after a failed upload: %s", path, exc)

        _after([self._sync, self._close, self._place], cleanup)


def _place(temp: Path, final: Path) -> None:
    if not final.parent.is_dir():
        final.parent.mkdir(mode=0o700, exist_ok=True)
        _fsync_dir(final.parent.parent)
    os.rename(temp, final)
    _fsync_dir(final.parent)


def _open_read(path: Path) -> BinaryIO:
    return path.open("rb")


def _pread(fd: int, size: int, offset: int) -> bytes:
    return os.pread(fd, size, offset)


class BlobStore:
    """The payloads of one store; ``directory`` None keeps new payloads in the database."""

    def __init__(self, store: Store, directory: Path | None) -> None:
        self.store = store
        self.directory = directory
        self._unlinking: set[asyncio.Future[int]] = set()

    async def close(self) -> None:
        """Wait for the files still being removed."""
        while self._unlinking:
            await asyncio.gather(*self._unlinking, return_exceptions=True)

    # --- start-up ---------------------------------------------------------------------

    async def open(self, store_id: str) -> None:
        """Claim the directory for this database and check that every payload can be found."""
        if self.directory is not None:
            await _run(_claim, self.directory, store_id)
            return
        async with self.store.read() as tx:
            found = (await tx.conn.execute(select(blobs.c.blob_id).where(blobs.c.location == FILE).limit(1))).first()
        if found is not None:
            raise BinaryStorageError(
                "this database keeps Binary payloads as files, but no binary directory is configured (database.binary_dir)"
            )

    async def sweep(self, *, stale_seconds: float) -> None:
        """Remove what crashed uploads and deletes left behind, if untouched for ``stale_seconds``."""
        cutoff = self.store.clock() - int(stale_seconds * 1000)  # rows carry the store's clock, files the system's
        file_cutoff = time.time() - stale_seconds
        async with self.store.write() as tx:
            ids = (
                await tx.conn.execute(
                    select(blobs.c.blob_id).where(blobs.c.complete == false(), blobs.c.created <= cutoff)
                )
            ).scalars().all()
            for start in range(0, len(ids), _BATCH):
                batch = list(ids[start : start + _BATCH])
                await tx.conn.execute(delete(blob_chunks).where(blob_chunks.c.blob_id.in_(batch)))
                await tx.conn.execute(delete(blobs).where(blobs.c.blob_id.in_(batch)))
        if ids:
            log.warning("removed %d Binary payloads of uploads that never completed", len(ids))
        if self.directory is None:
            return
        removed = await _run(_remove_stale_temp_files, self.directory / _INCOMING, file_cutoff)
        for fan_out in await _run(_fan_out_dirs, self.directory):
            names = await _run(_stale_files, fan_out, file_cutoff)
            for start in range(0, len(names), _BATCH):
                batch = names[start : start + _BATCH]
                async with self.store.read() as rtx:
                    known = set(
                        (await rtx.conn.execute(select(blobs.c.blob_id).where(blobs.c.blob_id.in_(batch)))).scalars()
                    )
                orphans = [fan_out / name for name in batch if name not in known]
                removed += await _run(_unlink_all, orphans)
        if removed:
            log.warning("removed %d Binary payload files no resource version names (crash or interrupted upload)", removed)

    # --- writing ----------------------------------------------------------------------

    async def write(self, chunks: AsyncIterable[bytes]) -> tuple[str, int]:
        """Stream a payload in; returns its id and size.  It is invisible until :meth:`link`."""
        if self.directory is None:
            return await self._write_rows(chunks)
        blob_id = uuid.uuid4().hex
        writer = _FileWriter(self.directory / _INCOMING / f"{blob_id}.part", self._path(blob_id))
        try:
            await writer.open()
            async for piece in chunks:
                await writer.add(piece)
            size = await writer.finish()
        except BaseException:
            writer.abort()
            raise
        return blob_id, size

    async def _write_rows(self, chunks: AsyncIterable[bytes]) -> tuple[str, int]:
        blob_id = uuid.uuid4().hex
        async with self.store.write() as tx:
            await tx.conn.execute(
                insert(blobs).values(
                    blob_id=blob_id, size=0, chunk_size=PIECE, complete=False, created=self.store.clock(), location=DATABASE
                )
            )
        size = 0
        seq = 0
        buffer = bytearray()
        try:
            async for piece in chunks:
                buffer += piece
                while len(buffer) >= PIECE:
                    await self._write_chunk(blob_id, seq, bytes(buffer[:PIECE]))
                    del buffer[:PIECE]
                    seq += 1
                    size += PIECE
            if buffer:
                await self._write_chunk(blob_id, seq, bytes(buffer))
                size += len(buffer)
            async with self.store.write() as tx:
                await tx.conn.execute(update(blobs).where(blobs.c.blob_id == blob_id).values(size=size))
        except BaseException:
            await self.discard(blob_id)
            raise
        return blob_id, size

    async def _write_chunk(self, blob_id: str, seq: int, data: bytes) -> None:
        async with self.store.write() as tx:
            await tx.conn.execute(insert(blob_chunks).values(blob_id=blob_id, seq=seq, data=data))

    async def link(self, tx: WriteTx, blob_id: str) -> None:
        """Inside the transaction of the resource version naming ``blob_id``: the payload becomes listed."""
        if self.directory is None:
            await tx.conn.execute(update(blobs).where(blobs.c.blob_id == blob_id).values(complete=True))
            return
        path = self._path(blob_id)
        try:
            size = (await _run(os.stat, path)).st_size
        except FileNotFoundError:
            raise PayloadMissing(f"the payload {blob_id} was not written") from None
        await tx.conn.execute(
            insert(blobs).values(
                blob_id=blob_id, size=size, chunk_size=0, complete=True, created=self.store.clock(), location=FILE
            )
        )

    async def discard(self, blob_id: str) -> None:
        """Remove a payload no committed version names (a failed or refused write)."""
        if self.directory is not None:
            await _run(_unlink_all, [self._path(blob_id)])
            return
        async with self.store.write() as tx:
            await tx.conn.execute(delete(blob_chunks).where(blob_chunks.c.blob_id == blob_id))
            await tx.conn.execute(delete(blobs).where(blobs.c.blob_id == blob_id))

    async def delete_in(self, tx: WriteTx, blob_ids: Sequence[str]) -> None:
        """Permanent delete: the rows go with ``tx``; files are unlinked once it has committed."""
        for start in range(0, len(blob_ids), _BATCH):
            batch = list(blob_ids[start : start + _BATCH])
            await tx.conn.execute(delete(blob_chunks).where(blob_chunks.c.blob_id.in_(batch)))
            await tx.conn.execute(delete(blobs).where(blobs.c.blob_id.in_(batch)))
        if self.directory is not None and blob_ids:
            paths = [self._path(b) for b in blob_ids]

            async def unlink() -> None:
                removal = _run(_unlink_all, paths)
                self._unlinking.add(removal)
                removal.add_done_callback(self._unlinked)

            tx.after_commit.append(unlink)

    def _unlinked(self, removal: asyncio.Future[int]) -> None:
        self._unlinking.discard(removal)
        if not removal.cancelled() and removal.exception() is not None:
            # the rows are gone: the start-up sweep removes the file
            log.warning("could not remove a permanently deleted Binary payload: %s", removal.exception())

    # --- reading ----------------------------------------------------------------------

    async def info(self, blob_id: str) -> BlobInfo | None:
        async with self.store.read() as tx:
            row = (
                await tx.conn.execute(
                    select(blobs.c.size, blobs.c.chunk_size, blobs.c.location).where(blobs.c.blob_id == blob_id)
                )
            ).first()
        if row is None:
            return None
        if row.location == FILE:
            if self.directory is None:
                raise PayloadMissing(f"the payload {blob_id} is a file, but no binary directory is configured")
            return BlobInfo(blob_id, int(row.size), FILE, 0, self._path(blob_id))
        return BlobInfo(blob_id, int(row.size), DATABASE, int(row.chunk_size), None)

    async def open_file(self, info: BlobInfo) -> BinaryIO:
        """The open file of a FILE payload (for ``sendfile``); the caller closes it."""
        assert info.path is not None
        try:
            return await _run(_open_read, info.path)
        except FileNotFoundError:
            raise PayloadMissing(f"the payload file of {info.blob_id} is missing") from None

    async def read(self, info: BlobInfo, start: int = 0, end: int | None = None) -> AsyncIterator[bytes]:
        """Bytes ``start`` .. ``end`` (inclusive) of a payload, 1 MiB at a time."""
        last = info.size - 1 if end is None else min(end, info.size - 1)
        if info.size == 0 or start > last:
            return
        if info.location == FILE:
            async for piece in self._read_file(info, start, last):
                yield piece
        else:
            async for piece in self._read_rows(info, start, last):
                yield piece

    async def _read_file(self, info: BlobInfo, start: int, last: int) -> AsyncIterator[bytes]:
        handle = await self.open_file(info)
        fd = handle.fileno()
        offset = start
        ahead: asyncio.Future[bytes] | None = _run(_pread, fd, min(PIECE, last + 1 - offset), offset)
        try:
            while ahead is not None:
                data = await ahead
                if not data:
                    raise PayloadMissing(f"the payload file of {info.blob_id} is shorter than recorded")
                offset += len(data)
                # the next piece is read from disk while this one goes out
                ahead = _run(_pread, fd, min(PIECE, last + 1 - offset), offset) if offset <= last else None
                yield data
        finally:
            _after([ahead], handle.close)

    async def _read_rows(self, info: BlobInfo, start: int, last: int) -> AsyncIterator[bytes]:
        chunk_size = info.chunk_size
        seq = start // chunk_size
        while seq * chunk_size <= last:
            async with self.store.read() as tx:
                data = (
                    await tx.conn.execute(
                        select(blob_chunks.c.data).where(
                            and_(blob_chunks.c.blob_id == info.blob_id, blob_chunks.c.seq == seq)
                        )
                    )
                ).scalar()
            if data is None:
                raise PayloadMissing(f"the payload {info.blob_id} is missing chunk {seq}")
            offset = seq * chunk_size
            lo = max(start - offset, 0)
            hi = min(last - offset, len(data) - 1)
            yield bytes(data[lo : hi + 1])
            seq += 1

    def _path(self, blob_id: str) -> Path:
        assert self.directory is not None
        return self.directory / blob_id[:2] / blob_id


# --- file system work (on worker threads) ----------------------------------------------


def _claim(directory: Path, store_id: str) -> None:
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    (directory / _INCOMING).mkdir(mode=0o700, exist_ok=True)
    marker = directory / _MARKER
    try:
        found: str | None = marker.read_text().strip()
    except FileNotFoundError:
        found = None
    if found == store_id:
        return
    if any(any(d.iterdir()) for d in _fan_out_dirs(directory)):
        owner = f"the database with store id {found}" if found else "an unknown database (no STORE_ID file)"
        raise BinaryStorageError(
            f"{directory} holds Binary payloads of {owner}, not of this one (store id {store_id}); "
            "give each database its own binary directory"
        )
    temp = directory / f"{_MARKER}.tmp"
    temp.write_text(store_id + "\n")
    os.rename(temp, marker)
    _fsync_dir(directory)


def _fan_out_dirs(directory: Path) -> list[Path]:
    return sorted(
        p for p in directory.iterdir() if len(p.name) == 2 and p.is_dir() and all(c in "0123456789abcdef" for c in p.name)
    )


def _stale_files(directory: Path, cutoff: float) -> list[str]:
    names = []
    with os.scandir(directory) as entries:
        for entry in entries:
            try:
                if entry.is_file(follow_symlinks=False) and entry.stat(follow_symlinks=False).st_mtime <= cutoff:
                    names.append(entry.name)
            except FileNotFoundError:  # removed meanwhile (by another worker sharing the directory)
                continue
    return names


def _remove_stale_temp_files(directory: Path, cutoff: float) -> int:
    if not directory.is_dir():
        return 0
    return _unlink_all([directory / name for name in _stale_files(directory, cutoff)])


def _unlink_all(paths: Sequence[Path]) -> int:
    removed = 0
    for path in paths:
        try:
            path.unlink()
            removed += 1
        except FileNotFoundError:
            pass
    return removed
