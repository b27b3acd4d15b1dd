"""A folder of compiled models that are checked before use (the openvino backend's cache).

OpenVINO's own model cache (``CACHE_DIR``) loads a damaged blob without a word: with 4 KiB of
a cached 3D net overwritten, its logits moved by up to 0.48 (a wrong mask, no error). Here
each entry is one file, ``<key>.blob``: a header with the sha256 of the payload, then the
payload (what ``CompiledModel.export_model`` gives). It is written through a temporary file
renamed into place, so a reader never sees half of it and a process that holds the old file
keeps it; an entry whose hash does not match is removed and rebuilt. No OpenVINO here.
"""

from __future__ import annotations

import hashlib
import logging
import time
from pathlib import Path

from .errors import OutputError
from .files import remove_stale_partials, write_bytes_atomic

log = logging.getLogger("l2s_engine")
MAGIC = b"L2S-COMPILED-1\n"
HASH_LEN = 64
STALE_SECONDS = 3600


def entry_key(*parts: str) -> str:
    """The file name stem of an entry: a hash of everything the compiled code depends on."""
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:40]


class BlobCache:
    """Verified compiled models in ``folder``.

    Args:
        folder: created here; one that cannot be created turns the cache off (``usable``).
    """

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self.problem: str | None = None
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            self.problem = f"cannot create {self.folder} ({exc.strerror or exc})"
            return
        # a writer killed mid-store leaves its temporary file; another process may be writing
        # one now, so only those an hour old go
        remove_stale_partials([self.folder], older_than=time.time() - STALE_SECONDS)

    @property
    def usable(self) -> bool:
        return self.problem is None

    def path(self, key: str) -> Path:
        return self.folder / f"{key}.blob"

    def load(self, key: str) -> bytes | None:
        """The payload stored under ``key``, or None (absent, unreadable, or damaged: removed)."""
        path = self.path(key)
        try:
            data = path.read_bytes()
        except OSError:
            return None
        head = len(MAGIC) + HASH_LEN + 1
        payload = data[head:]
        if (data[:len(MAGIC)] != MAGIC or data[head - 1:head] != b"\n"
                or hashlib.sha256(payload).hexdigest().encode() != data[len(MAGIC):head - 1]):
            log.warning("%s: damaged compiled model in the cache (sha256 differs); removed, compiling again", path)
            path.unlink(missing_ok=True)
            return None
        return payload

    def store(self, key: str, payload: bytes) -> bool:
        """Store ``payload`` under ``key`` atomically; False where it cannot be written (why: ``problem``)."""
        data = MAGIC + hashlib.sha256(payload).hexdigest().encode() + b"\n" + payload
        try:
            write_bytes_atomic(self.path(key), data)
        except OutputError as exc:
            self.problem = str(exc)
            return False
        return True
