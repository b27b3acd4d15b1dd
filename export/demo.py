"""l2s-demo: phantom studies -> the committed demo weights -> export -> inference -> metrics.

The whole product on the CPU in a few minutes: it writes small synthetic whole-body studies,
exports ``weights/demo`` to ONNX (fp32 + fp16) and OpenVINO IR (parity checked, bf16 gate), runs
``l2s-infer`` (``--backend auto``: OpenVINO on the CPU) and prints metrics, stage timings and where the QC pictures are. It lives in
l2s_export because it exports (torch); l2s_engine itself never imports torch.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
import warnings
from pathlib import Path

from l2s_engine.cli import infer_main
from l2s_engine.errors import L2SError
from l2s_engine.phantoms import make_phantom
from l2s_engine.phantoms.files import write_study

from .checks import check_weights_dirs, check_writable

DEMO_WEIGHTS = Path(__file__).resolve().parents[1] / "weights" / "demo"
DEMO_SEED = 1000  # the independent phantom set the demo weights were scored on (scripts/train_demo.sh)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="l2s-demo", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("demo"), help="working folder (default demo/)")
    parser.add_argument("--weights", type=Path, default=DEMO_WEIGHTS, help=f"weights directory (default {DEMO_WEIGHTS})")
    parser.add_argument("-n", "--studies", type=int, default=4, help="phantom studies (default 4; half have lesions)")
    parser.add_argument("--threads", type=int, help="inference threads (default: one per core)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    warnings.filterwarnings("ignore", category=UserWarning, module=r"torch\.onnx")  # exporter internals, not the user's
    if args.studies < 1:
        parser.error("--studies must be >= 1")
    if not (args.weights / "config.json").is_file():
        print(f"l2s-demo: {args.weights}: no weights directory (config.json); pass --weights DIR", file=sys.stderr)
        return 2
    started = time.perf_counter()
    studies, engines, predictions = args.out / "studies", args.out / "engines", args.out / "predictions"
    step = time.perf_counter()
    for index in range(args.studies):
        write_study(make_phantom(index, DEMO_SEED, "small"), studies)
    print(f"[1/3] {args.studies} small phantom studies (seed {DEMO_SEED}) -> {studies} "
          f"({time.perf_counter() - step:.1f} s)")
    step = time.perf_counter()
    try:
        spec = check_weights_dirs([args.weights])
        check_writable(engines)
        from .pipeline import export_all

        export_all([args.weights], spec, engines, tensorrt=False, profiles={}, check_studies=1)
    except L2SError as exc:
        print(f"l2s-demo: {exc}", file=sys.stderr)
        return 2
    print(f"[2/3] exported {args.weights} ({spec.preset} preset) -> {engines}: ONNX fp32 + fp16 and OpenVINO IR, parity checked "
          f"({time.perf_counter() - step:.1f} s)")
    print("[3/3] l2s-infer (--backend auto: the fastest backend this machine runs):")
    # --full-cue: the cue on every body slice, so that the QC pictures outline all of it
    infer_args = ["--engine", str(engines), str(studies), "-o", str(predictions), "--qc", "--full-cue", "--overwrite"]
    if args.threads:
        infer_args += ["--threads", str(args.threads)]
    code = infer_main(infer_args)
    print(f"QC pictures (coronal PET MIP; the mask in red, the 2D net's cue > 0.5 outlined in blue): {predictions / 'qc'}")
    print(f"review page (open in a browser; offline): {predictions / 'report.html'}; "
          f"lesion table: {predictions / 'lesions.csv'}")
    print(f"demo finished in {time.perf_counter() - started:.1f} s")
    return code


if __name__ == "__main__":
    sys.exit(main())
