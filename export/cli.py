"""l2s-export: weights directory (or several, one per fold) -> engine directory.

Steps: ONNX fp32 graphs (parity with PyTorch checked, <= 1e-4 in probability), their fp16
twins (accuracy measured on the CPU with ONNX Runtime), OpenVINO IR of the fp32 graphs (parity
checked; the bf16 fidelity gate of each network measured where this CPU has bf16 units),
TensorRT plans where TensorRT and a GPU are present, and manifest.json with every file's sha256.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from l2s_engine.errors import L2SError

from .checks import check_weights_dirs, check_writable, parse_profile, parse_spacing



def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="l2s-export", description=__doc__)
    parser.add_argument("weights", type=Path, nargs="+", help="weights directory, or one per fold")
    parser.add_argument("-o", "--out", type=Path, help="engine directory (default: engines/ beside the first weights)")
    parser.add_argument("--no-tensorrt", action="store_true", help="export ONNX only")
    parser.add_argument("--programs-only", action="store_true",
                        help="write only the torch.export programs (.pt2) and the manifest: what the torch backend "
                             "runs, e.g. on a GPU host with torch but without the ONNX toolchain")
    parser.add_argument("--batch-2d", type=parse_profile, default=(1, 16, 32), help="TensorRT profile MIN,OPT,MAX (default 1,16,32)")
    parser.add_argument("--batch-3d", type=parse_profile, default=(1, 2, 4), help="TensorRT profile MIN,OPT,MAX (default 1,2,4)")
    parser.add_argument("--spacing", type=parse_spacing, metavar="Z,Y,X",
                        help="network spacing in mm, numpy order z,y,x, for weights whose config.json predates "
                             "the field (recorded in the manifest; the weights are not changed)")
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    out = args.out or args.weights[0].resolve().parent / "engines"
    try:
        spec = check_weights_dirs(args.weights, args.spacing)
        check_writable(out)
        from .pipeline import export_all, export_programs

        if args.programs_only:
            export_programs(args.weights, spec, out)
        else:
            export_all(args.weights, spec, out, tensorrt=not args.no_tensorrt,
                       profiles={"loc2d": args.batch_2d, "seg3d": args.batch_3d})
    except L2SError as exc:
        print(f"l2s-export: {exc}", file=sys.stderr)
        return 2
    print(f"engine directory: {os.fspath(out)}")
    return 0
