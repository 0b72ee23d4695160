"""Content-addressed model blobs: `D/blobs/<sha256>`, written atomically, verified on read.

A blob is written with storage.files.atomic_write_bytes (temp file in the same directory,
fsync, rename, directory fsync), so after a crash a blob is either whole under its name or
absent. Temp files (every name starting with ".") are swept at open. Reads
hash the bytes; a file whose hash is not its name (disk rot, a truncated copy from an older
tool) is moved to `quarantine/` and reported, never served.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
import secrets
from pathlib import Path

from storage.files import atomic_write_bytes, fsync_dir

_SHA_HEX = re.compile(r"[0-9a-f]{64}")
TEMP_PREFIX = ".tmp-"  # for writers outside this module (the mesh's streaming fetch)
MAX_BLOB_BYTES = 4 << 30  # a policy/value net is tens of MB; 4 GiB bounds a bad peer


class BlobCorruptError(Exception):
    """A blob's content does not hash to the expected sha256."""

    def __init__(self, expected: str, actual: str, quarantined: Path | None = None) -> None:
        where = f"; moved to {quarantined}" if quarantined else ""
        super().__init__(f"blob {expected} hashes to {actual}{where}")
        self.expected = expected
        self.actual = actual
        self.quarantined = quarantined


class BlobMissingError(FileNotFoundError):
    """No blob with that sha256 is held here."""


def check_sha(sha: str) -> str:
    if type(sha) is not str or not _SHA_HEX.fullmatch(sha):
        raise ValueError(f"blob id {sha!r:.80} is not a lowercase hex sha256")
    return sha


class BlobStore:
    """The blob directory. Blocking file work runs in a thread so the event loop keeps going."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.quarantine_dir = root / "quarantine"
        root.mkdir(parents=True, exist_ok=True)
        # Temp files left by a crash mid-write are garbage: their content never got a name.
        for stale in root.glob(".*"):
            if stale.is_file():
                stale.unlink(missing_ok=True)

    def path(self, sha: str) -> Path:
        return self.root / check_sha(sha)

    def has(self, sha: str) -> bool:
        return self.path(sha).is_file()

    def held(self) -> list[str]:
        return sorted(p.name for p in self.root.iterdir() if _SHA_HEX.fullmatch(p.name))

    async def put(self, data: bytes, expected_sha: str | None = None) -> str:
        """Store `data`; returns its sha256. With `expected_sha`, refuses other content."""
        if expected_sha is not None:
            check_sha(expected_sha)
        if len(data) > MAX_BLOB_BYTES:
            raise ValueError(f"blob of {len(data)} bytes exceeds {MAX_BLOB_BYTES}")
        return await asyncio.to_thread(self._put, bytes(data), expected_sha)

    def _put(self, data: bytes, expected_sha: str | None) -> str:
        sha = hashlib.sha256(data).hexdigest()
        if expected_sha is not None and sha != expected_sha:
            raise BlobCorruptError(expected_sha, sha)
        final = self.root / sha
        if final.is_file():
            return sha  # content-addressed: the same name holds the same bytes
        atomic_write_bytes(final, data)
        return sha

    async def get(self, sha: str) -> bytes:
        """The verified bytes of a blob; BlobMissingError or BlobCorruptError otherwise."""
        path = self.path(sha)
        return await asyncio.to_thread(self._get, sha, path)

    def _get(self, sha: str, path: Path) -> bytes:
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise BlobMissingError(f"no blob {sha} in {self.root}") from None
        actual = hashlib.sha256(data).hexdigest()
        if actual != sha:
            self.quarantine_dir.mkdir(exist_ok=True)
            target = self.quarantine_dir / f"{sha}.{secrets.token_hex(4)}"
            os.replace(path, target)
            fsync_dir(self.root)
            raise BlobCorruptError(sha, actual, target)
        return data
