"""Reading one study: DICOM series (discovery + load) against the same study as NIfTI.

    python benchmarks/read_dicom.py [--size full|small|tiny] [--repeats 5] [--work DIR] [--out DIR]

One phantom study is written twice under ``--work``: as autoPET NIfTI (``SUV.nii.gz``,
``CTres.nii.gz``, no label) and as a DICOM PT + CT series (int16 slices, per-slice slopes, as
scanners write them). Each is found (``find_studies``) and loaded (``load_study``: SUV and CT
float32 on the PET grid, every check included) ``--repeats`` times in this process, after one
untimed warm-up; the minimum and the median are reported, per study and per million PET
voxels. Files are in the page cache after the warm-up: this measures decoding and checking,
not the disk. Writes ``read-dicom-<device>-<date>.json`` into ``--out``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from report import device_slug, machine  # noqa: E402


def _time(paths: list[Path], repeats: int) -> dict:
    from l2s_engine.io import find_studies, load_study

    ref = find_studies(paths)[0]
    load_study(ref)  # warm-up: imports, page cache
    find, load = [], []
    for _ in range(repeats):
        start = time.perf_counter()
        ref = find_studies(paths)[0]
        found = time.perf_counter()
        study = load_study(ref)
        find.append(found - start)
        load.append(time.perf_counter() - found)
    total = [a + b for a, b in zip(find, load)]
    mvox = study.pet.size / 1e6
    return {"find_s": {"min": min(find), "median": statistics.median(find)},
            "load_s": {"min": min(load), "median": statistics.median(load)},
            "total_s": {"min": min(total), "median": statistics.median(total)},
            "total_s_per_mvoxel": min(total) / mvox, "pet_voxels": study.pet.size,
            "bytes_on_disk": sum(p.stat().st_size for p in Path(paths[0]).rglob("*") if p.is_file())}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="full", choices=("tiny", "small", "full"))
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--work", type=Path, default=Path("data/bench-read"))
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results")
    args = parser.parse_args(argv)

    from l2s_engine.phantoms import make_phantom
    from l2s_engine.phantoms.dicom import write_dicom_study
    from l2s_engine.phantoms.files import write_study

    study = make_phantom(0, 0, args.size)
    nifti = write_study(study, args.work / args.size / "nifti")
    (nifti / "SEG.nii.gz").unlink()  # the DICOM study has no label: read the same images
    dicom = write_dicom_study(study, args.work / args.size / "dicom")
    results = {"nifti": _time([nifti], args.repeats), "dicom": _time([dicom], args.repeats)}
    ratio = results["dicom"]["total_s"]["min"] / results["nifti"]["total_s"]["min"]
    info = machine()
    report = {"date": datetime.date.today().isoformat(), "machine": info, "size": args.size,
              "shape_zyx": list(study.pet.shape), "repeats": args.repeats, "results": results,
              "dicom_over_nifti": ratio}
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"read-dicom-{device_slug(info)}-{report['date']}.json"
    path.write_text(json.dumps(report, indent=2) + "\n")
    for name, r in results.items():
        print(f"{name:>6}: find {r['find_s']['min']:.3f} s + load {r['load_s']['min']:.3f} s = "
              f"{r['total_s']['min']:.3f} s (median {r['total_s']['median']:.3f}), "
              f"{1000 * r['total_s_per_mvoxel']:.1f} ms per million PET voxels, {r['bytes_on_disk'] / 1e6:.0f} MB")
    print(f"DICOM / NIfTI time: {ratio:.2f}  ({info['cpu']}, {info['cores']} cores) -> {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
