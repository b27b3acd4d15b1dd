"""The phantom studies the benchmark runs on: image files (autoPET layout), or pickled arrays
for ``--in-memory`` (no SimpleITK needed to make or load them). Made once under ``--work``."""

from __future__ import annotations

import functools
import pickle
from pathlib import Path
from types import SimpleNamespace

SEED = 4242  # the benchmark's phantom set


def _pickle_study(study, folder: Path, index: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / f"{index:03d}.pkl", "wb") as f:
        pickle.dump({"case_id": study.case_id, "pet": study.pet, "ct": study.ct, "geometry": study.geometry}, f,
                    protocol=pickle.HIGHEST_PROTOCOL)


def make_studies(work: Path, size: str, n: int, in_memory: bool) -> Path:
    """The folder of ``n`` phantom studies of ``size`` (seed ``SEED``), written once."""
    from l2s_engine.phantoms import make_phantom

    folder = work / f"{'arrays' if in_memory else 'studies'}-{size}-{SEED}-{n}"
    if not (folder / ".complete").exists():
        for i in range(n):
            study = make_phantom(i, seed=SEED, size=size)
            if in_memory:
                _pickle_study(study, folder, i)
            else:
                from l2s_engine.phantoms.files import write_study

                write_study(study, folder, "autopet")
        (folder / ".complete").write_text("")
    return folder


def _load_arrays(path: Path) -> SimpleNamespace:
    with open(path, "rb") as f:
        return SimpleNamespace(**pickle.load(f))


def study_loaders(folder: Path, in_memory: bool) -> list:
    """One ``load() -> study`` (``case_id``, ``pet``, ``ct``, ``geometry``) per study of ``folder``."""
    if in_memory:
        return [functools.partial(_load_arrays, path) for path in sorted(folder.glob("*.pkl"))]
    from l2s_engine.io import find_studies, load_study

    return [functools.partial(load_study, ref) for ref in find_studies([folder])]
