"""What a process has used so far (host memory), without importing the study I/O."""

from __future__ import annotations

import os
import resource
import sys
from pathlib import Path

# Host memory a study takes per voxel of its largest image: PET and CT as float32, their
# normalised copies, the 3D accumulators, the cue, the mask, and the next study read ahead.
BYTES_PER_VOXEL = 48


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far, in MiB.

    Linux: ``VmHWM`` of /proc/self/status, which starts afresh at exec; ``ru_maxrss`` does not
    (a process started by a big parent reports the parent's peak). Elsewhere ``ru_maxrss``
    (KiB on Linux, bytes on macOS).
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    except (OSError, ValueError, IndexError):
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024.0


def default_max_voxels() -> int:
    """The voxel budget of one input image on this machine: physical memory / BYTES_PER_VOXEL.

    24 GiB gives about 527 million voxels; an autoPET PET is at most 400 x 400 x 677 (108
    million). A CT may hold ``io.study.CT_VOXEL_FACTOR`` times as many.
    """
    try:
        memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        memory = 16 << 30
    return max(int(memory // BYTES_PER_VOXEL), 1)
