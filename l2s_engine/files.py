"""Plain files written atomically, and the output folder's checks (no SimpleITK here).

Every output goes to a temporary ``.<name>.<random>.partial<suffix>`` file in the target's
folder, is flushed to the disk (a full disk may only say so at ``fsync``), and is renamed over
the target only when complete, so a reader never sees a partial file.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .errors import OutputError


def _read_umask() -> int:
    mask = os.umask(0)  # the only way to read it; done once, at import, before any writer thread
    os.umask(mask)
    return mask


UMASK = _read_umask()


def sync_file(tmp: Path, final: Path) -> None:
    """Flush ``tmp`` to the disk; a full disk may only say so here (delayed allocation, NFS)."""
    try:
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError as exc:
        raise OutputError(f"{final}: writing failed ({exc.strerror or exc}); free space on the output "
                          "disk and run again (nothing was published)") from exc


def write_text_atomic(path: Path, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically; see ``write_bytes_atomic``."""
    return write_bytes_atomic(path, text.encode("utf-8"))


def write_csv_atomic(path: Path, fields, rows) -> Path:
    """Write ``rows`` (dicts; keys beyond ``fields`` ignored) as CSV with a header, atomically."""
    import csv
    import io

    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=list(fields), lineterminator="\n", extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    return write_text_atomic(path, text.getvalue())


def write_bytes_atomic(path: Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` through a flushed temporary file renamed into place.

    Raises:
        OutputError: the folder is not writable or the disk is full; nothing was replaced.
    """
    with publishing(path) as tmp:
        try:
            tmp.write_bytes(data)
        except OSError as exc:
            raise OutputError(f"{path}: cannot write it ({exc.strerror or exc}); free space or fix the "
                              "permissions of the output folder and run again") from exc
    return Path(path)


@contextmanager
def publishing(path: Path, stem: str | None = None, suffix: str = "") -> Iterator[Path]:
    """A temporary file beside ``path`` to write; renamed over ``path`` when the block ends well.

    The one way outputs are published: the block writes (and may verify) the temporary file
    ``.<stem>.<random>.partial<suffix>``; then it is flushed to the disk (a full disk may only
    say so at ``fsync``), given the usual file mode and renamed into place. On any error it is
    removed and ``path`` is left as it was.

    Args:
        path: the file to publish.
        stem: the temporary name's stem (default ``path``'s name).
        suffix: the temporary name's ending (a writer that picks its format by the name needs it).

    Raises:
        OutputError: the temporary file cannot be made, flushed or renamed.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix=f".{stem or path.name}.", suffix=f".partial{suffix}", dir=path.parent)
        os.close(fd)
    except OSError as exc:
        raise OutputError(f"{path}: cannot create a file in its folder ({exc.strerror or exc}); fix the "
                          "permissions of the output folder or choose another one") from exc
    tmp = Path(name)
    try:
        yield tmp
        sync_file(tmp, path)
        os.chmod(tmp, 0o666 & ~UMASK)  # mkstemp makes 0600 files; outputs get the usual mode
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise OutputError(f"{path}: cannot publish it ({exc.strerror or exc}); free space or fix the "
                          "permissions of the output folder and run again") from exc
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def ensure_writable_dir(folder: Path) -> Path:
    """Create ``folder`` if needed and prove a file can be created in it.

    Raises:
        OutputError: it is a file, cannot be created, or is not writable (checked before any
            study is computed, so that no work is lost at the end).
    """
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise OutputError(f"{folder}: the output folder is a file; choose another output folder (-o)")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix=".l2s-write-check.", suffix=".partial", dir=folder)
        os.close(fd)
        os.unlink(name)
    except OSError as exc:
        raise OutputError(f"{folder}: the output folder is not writable ({exc.strerror or exc}); fix its "
                          "permissions or choose another output folder (-o)") from exc
    return folder


def remove_stale_partials(folders, older_than: float) -> list[Path]:
    """Delete temporary ``.*.partial*`` files left by an interrupted run (kill -9, power loss).

    Only files last modified before ``older_than`` (a time.time() stamp, the start of this run)
    are removed, so this run's own temporary files are never touched.
    """
    removed = []
    for folder in folders:
        try:
            entries = list(os.scandir(folder))
        except OSError:
            continue
        for entry in entries:
            if entry.name.startswith(".") and ".partial" in entry.name and entry.is_file(follow_symlinks=False):
                try:
                    if entry.stat(follow_symlinks=False).st_mtime < older_than:
                        os.unlink(entry.path)
                        removed.append(Path(entry.path))
                except OSError:
                    continue
    return removed
