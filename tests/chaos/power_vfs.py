"""A disk that can lose power: an APSW VFS over the real files that keeps, per file, the
content as of its last sync, and on a cut puts every file back to that content.

What it models. Between two syncs of a file, what a write put in it lives in the operating
system's cache: a process that crashes leaves it there, a power loss may lose any of it. Every
write goes through to the real file at once (so SQLite reads back what it wrote, as from a
cache) and is also remembered as *pending*; ``xSync`` makes the pending writes of that file
durable. A cut, at any numbered write, sync or truncate, fails that operation and every later
one, and ``restore`` then rewrites each file as the disk would hold it after the power comes
back:

- ``drop``: the durable content alone, every pending write lost;
- ``tear``: the durable content plus a random subset of the pending writes, each whole (disks
  reorder the writes in their cache; SQLite assumes sector writes are not torn inside);
- ``keep``: every pending write kept (what a kill -9 leaves: the cache survives).

A file that was created and never synced does not exist after a ``drop`` or ``tear``; a deleted
file stays deleted (SQLite syncs the directory around the deletions it relies on). The
``-shm`` wal-index is shared memory, not data: it is removed, and the next opener rebuilds it
from the WAL as after a real crash.

What it does not model: the directory entries of a file created and synced are taken as durable
with the first sync of the file itself; a write torn inside a sector; a disk that lies about
syncs. The real ``fsync`` is never called: durability here is the model's, not the device's.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import apsw

CutMode = Literal["drop", "tear", "keep"]


class PowerCut(apsw.IOError):
    """Raised into SQLite by every operation from the cut on."""


@dataclass
class _File:
    #: The content as of the last sync; None while the file does not exist durably.
    durable: bytearray | None
    #: Writes (offset, data) and truncations (size, None) since the last sync, in order.
    pending: list[tuple[int, bytes | None]] = field(default_factory=list)

    def sync(self) -> None:
        content = self.durable if self.durable is not None else bytearray()
        for offset, data in self.pending:
            _apply(content, offset, data)
        self.durable = content
        self.pending.clear()


def _apply(content: bytearray, offset: int, data: bytes | None) -> None:
    if data is None:
        del content[offset:]
        return
    if len(content) < offset:
        content.extend(bytes(offset - len(content)))
    content[offset : offset + len(data)] = data


class Disk(apsw.VFS):
    """Registers the VFS ``name``; open connections with ``vfs=name``."""

    def __init__(self, name: str, cut_at: int | None = None) -> None:
        super().__init__(name, "")
        self.name = name
        #: The number of the write, sync or truncate that the power goes out on.
        self.cut_at = cut_at
        #: Writes, syncs and truncates so far.
        self.operations = 0
        self.off = False
        #: What the power went out on: "write", "sync" or "truncate" of which file.
        self.cut_during: str | None = None
        self.files: dict[str, _File] = {}
        #: Called after each sync, with the path synced.
        self.on_sync: list[Any] = []

    def tick(self, operation: str, path: str) -> None:
        """Count one write, sync or truncate; the power goes out on number ``cut_at``."""
        if self.off:
            raise PowerCut("the power is off")
        self.operations += 1
        if self.cut_at is not None and self.operations >= self.cut_at:
            self.off = True
            self.cut_during = f"{operation} of {Path(path).name}"
            raise PowerCut("the power went out")

    def cut(self) -> None:
        self.off = True

    def track(self, path: str) -> _File:
        if path not in self.files:
            existing = Path(path)
            self.files[path] = _File(
                bytearray(existing.read_bytes()) if existing.exists() else None
            )
        return self.files[path]

    def xOpen(self, name: Any, flags: list[int]) -> apsw.VFSFile:
        if self.off:
            raise PowerCut("the power is off")
        path = name if isinstance(name, str) or name is None else name.filename()
        if path is None:  # a temporary file: never durable, never looked at again
            return apsw.VFSFile("", name, flags)
        return _DiskFile(self, path, name, flags)

    def xDelete(self, filename: str, syncdir: bool) -> None:
        if self.off:
            raise PowerCut("the power is off")
        super().xDelete(filename, syncdir)
        if filename in self.files:
            self.files[filename] = _File(None)

    def restore(self, mode: CutMode, rng: random.Random) -> None:
        """Every file as the disk holds it when the power comes back (see the module)."""
        for path, state in self.files.items():
            if mode == "keep":
                Path(f"{path}-shm").unlink(missing_ok=True)
                continue
            if state.durable is None:
                Path(path).unlink(missing_ok=True)
                Path(f"{path}-shm").unlink(missing_ok=True)
                continue
            content = bytearray(state.durable)
            if mode == "tear":
                for offset, data in state.pending:
                    if rng.random() < 0.5:
                        _apply(content, offset, data)
            Path(path).write_bytes(bytes(content))
            Path(f"{path}-shm").unlink(missing_ok=True)


class _DiskFile(apsw.VFSFile):
    def __init__(self, disk: Disk, path: str, name: Any, flags: list[int]) -> None:
        # Tracked before the open, which may create the file: a new file is not durable yet.
        self._state = disk.track(path)
        self._disk = disk
        self._path = path
        super().__init__("", name, flags)

    def xRead(self, amount: int, offset: int) -> bytes:
        if self._disk.off:
            raise PowerCut("the power is off")
        data: bytes = super().xRead(amount, offset)
        return data

    def xWrite(self, data: bytes, offset: int) -> None:
        self._disk.tick("write", self._path)
        super().xWrite(data, offset)
        self._state.pending.append((offset, bytes(data)))

    def xTruncate(self, newsize: int) -> None:
        self._disk.tick("truncate", self._path)
        super().xTruncate(newsize)
        self._state.pending.append((newsize, None))

    def xSync(self, flags: int) -> None:
        self._disk.tick("sync", self._path)
        self._state.sync()
        for listener in self._disk.on_sync:
            listener(self._path)
