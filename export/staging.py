"""Build an engine directory beside its target and swap it in whole, only once it is complete.

An export writes into a hidden sibling of the target, ``.<name>.l2s-export-<pid>-<token>``
(same parent, so the swap is a rename on one file system). Only after every check passed
and the manifest is written does the staged folder replace the target:

- a failed export removes its staged folder and leaves the target as it was, byte for byte;
- a successful one replaces the whole target folder, so no file of an older engine stays;
- a target folder that holds files but no ``manifest.json`` is not an engine directory, and
  is refused rather than replaced (it may hold the user's files);
- an export killed outright (``kill -9``) leaves the target intact and its staged folder
  behind; the name says which export (pid) left it, and the next export into the same target
  removes it once that process is gone.

The swap is atomic where Linux's ``renameat2(RENAME_EXCHANGE)`` is available (the target
never disappears, even for a moment); elsewhere the target is first renamed aside, and an
export killed between the two renames is restored by the next export.
"""

from __future__ import annotations

import ctypes
import errno
import logging
import os
import secrets
import shutil
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from l2s_engine.errors import OutputError
from l2s_engine.manifest import MANIFEST

log = logging.getLogger("l2s_export")
STAGE_TAG = "l2s-export"
OLD_SUFFIX = "-old"  # the target renamed aside, where the swap is two renames


class NotAnEngineDirError(OutputError):
    """The export target is a folder with files but no manifest.json: not an engine directory
    this exporter may replace."""


def stage_prefix(target: Path) -> str:
    """Name prefix of the staged folders of ``target`` (hidden siblings)."""
    return f".{target.name}.{STAGE_TAG}-"


def resolve_target(out: Path) -> Path:
    """The absolute target folder, symlinks resolved (the swap replaces the real folder)."""
    return Path(os.path.realpath(out))


def check_target(out: Path) -> Path:
    """Refuse a target that is a file, or a folder of files that is not an engine directory.

    Returns:
        The resolved target.

    Raises:
        OutputError: ``out`` is a file.
        NotAnEngineDirError: ``out`` holds files but no manifest.json.
    """
    target = resolve_target(out)
    if target.exists() and not target.is_dir():
        raise OutputError(f"{out}: is a file, not an engine directory; choose another -o")
    if target.is_dir() and not (target / MANIFEST).is_file():
        try:
            entries = sorted(p.name for p in target.iterdir())
        except OSError as exc:
            raise OutputError(f"{out}: cannot list the folder ({exc.strerror}); choose another -o") from exc
        if entries:
            shown = ", ".join(entries[:3]) + (", ..." if len(entries) > 3 else "")
            raise NotAnEngineDirError(
                f"{out}: holds {len(entries)} file(s) ({shown}) but no {MANIFEST}, so it is not an engine "
                "directory and l2s-export will not replace it; choose an empty or new folder with -o")
    return target


@contextmanager
def staged_engine_dir(out: Path) -> Iterator[Path]:
    """A fresh folder to build the engine directory in; swapped in for ``out`` on success.

    On any exception (or interrupt) the staged folder is removed and ``out`` is left as it was.

    Raises:
        OutputError / NotAnEngineDirError: as ``check_target``, or the parent is not writable.
    """
    target = check_target(out)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        clean_stale(target)
        work = target.parent / f"{stage_prefix(target)}{os.getpid()}-{secrets.token_hex(4)}"
        work.mkdir()
    except OSError as exc:
        raise OutputError(f"{out}: cannot build the engine directory beside it in {target.parent} "
                          f"({exc.strerror or exc}); choose -o elsewhere") from exc
    try:
        yield work
        check_target(target)  # it may have changed during a long export
        try:
            swap_in(work, target)
        except OSError as exc:
            raise OutputError(f"{out}: cannot replace it with the new engine directory ({exc.strerror or exc}); "
                              "it is unchanged; check its permissions or choose -o elsewhere") from exc
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise


def swap_in(work: Path, target: Path) -> None:
    """Put the complete folder ``work`` at ``target``; an older ``target`` is removed after.

    Raises:
        OSError: the rename failed; ``target`` is unchanged.
    """
    if not target.exists():
        os.rename(work, target)
        return
    if _exchange(work, target):  # work now holds the old engine
        shutil.rmtree(work, ignore_errors=True)
        return
    aside = work.with_name(work.name + OLD_SUFFIX)
    os.rename(target, aside)
    try:
        os.rename(work, target)
    except BaseException:
        os.rename(aside, target)
        raise
    shutil.rmtree(aside, ignore_errors=True)


def clean_stale(target: Path) -> list[Path]:
    """Remove the staged folders of ``target`` left by exports that are no longer running.

    A target renamed aside by a two-rename swap that was killed half-way is put back first.

    Returns:
        The folders removed or restored.
    """
    done = []
    prefix = stage_prefix(target)
    for folder in sorted(target.parent.glob(f"{prefix}*")):
        pid = _pid_of(folder.name[len(prefix):])
        if pid is None or not folder.is_dir() or _running(pid):
            continue
        try:
            if folder.name.endswith(OLD_SUFFIX) and not target.exists():
                os.rename(folder, target)
                log.warning("%s: restored the engine directory an interrupted export had renamed to %s",
                            target, folder.name)
            else:
                shutil.rmtree(folder)
                log.info("%s: removed %s, left by an interrupted export (pid %d)", target, folder.name, pid)
        except OSError as exc:  # not ours to remove after all, or read-only: say so, and go on
            log.warning("%s: could not remove %s, left by an interrupted export (%s)", target, folder, exc)
            continue
        done.append(folder)
    return done


def _pid_of(tail: str) -> int | None:
    head = tail.split("-", 1)[0]
    return int(head) if head.isdigit() else None


def _running(pid: int) -> bool:
    """Whether process ``pid`` exists on this machine (where that cannot be asked safely: yes)."""
    if os.name != "posix":
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap two paths (Linux ``renameat2(RENAME_EXCHANGE)``); False where unsupported."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):  # a libc without renameat2 (glibc < 2.28, some musl)
        return False
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    at_fdcwd, rename_exchange = -100, 2
    if renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):  # kernel or file system without it
        return False
    raise OSError(err, os.strerror(err), str(b))
