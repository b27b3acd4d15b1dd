"""The benchmark's numbers per pipeline, the machine, and the JSON / Markdown / PNG report."""

from __future__ import annotations

import importlib.metadata
import json
import os
import platform
from pathlib import Path

import numpy as np

STAGES = ("read", "preprocess", "resample", "2d", "3d", "fusion", "write")
CPU_TARGETS = {"speedup": 2.5, "network_share_of_peak": 0.40}
# speed-ups over the peers (PyTorch fp32) where ours ran bf16, by the CPU's bf16 unit
BF16_TARGETS = {"AMX-BF16": {"nnunet-style": 8.0, "monai": 12.0}, "AVX512-BF16": {"nnunet-style": 4.0}}
ROLES = {"2d": "loc2d", "3d": "seg3d"}


def speedup_target(bf16_unit: str, ran_bf16: bool, peer: str) -> float:
    """The speed-up ours must reach over ``peer`` (issue 15): higher where bf16 ran."""
    return BF16_TARGETS.get(bf16_unit, {}).get(peer, CPU_TARGETS["speedup"]) if ran_bf16 else CPU_TARGETS["speedup"]


def stage_precisions(run: dict, default: str) -> dict:
    """The precision each network stage of a pipeline ran in: per network from our backend's
    report (openvino: fp32 or bf16), else ``default`` (the peers: PyTorch fp32)."""
    networks = run.get("backend", {}).get("networks", {})
    out = {}
    for stage, role in ROLES.items():
        ran = {n.get("precision") for n in networks.get(role, [])}
        out[stage] = "bf16" if "bf16" in ran else default
    return out


def machine() -> dict:
    """CPU model, cores, GPU (if torch sees one) and the versions that matter."""
    from l2s_engine.cpuinfo import bf16_isa, reported_flags, this_cpu

    cpu, flags = this_cpu()
    versions = {}
    for package in ("numpy", "onnxruntime", "openvino", "torch", "monai", "l2s-engine"):
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            versions[package] = None
    gpu = None
    try:
        import torch

        if torch.cuda.is_available():
            gpu = torch.cuda.get_device_name(0)
    except ImportError:
        pass
    return {"cpu": cpu, "cpu_flags": reported_flags(flags), "bf16_unit": bf16_isa(flags), "cores": os.cpu_count(),
            "gpu": gpu, "python": platform.python_version(), **versions}


def device_slug(info: dict) -> str:
    name = info["gpu"] or f"cpu-{info['cores']}core-{info['cpu']}"
    return "".join(c if c.isalnum() else "-" for c in name.lower()).strip("-").replace("--", "-")[:60]


def summarise(runs: dict, flops: dict, peaks: dict, reference: str) -> dict:
    """Per pipeline: mean stage times, end-to-end p50/p95, throughput, memory, FLOP/s, mask check.

    Args:
        peaks: matmul peak per precision ("fp32", "bf16"; "fp16" on a GPU); the first is the
            default precision, the one the peers and our fp32 stages ran in.
    """
    default = next(iter(peaks))
    ref_e2e = float(np.mean([r["end_to_end"] for r in runs[reference]["studies"]]))
    out = {}
    for name, run in runs.items():
        rows = run["studies"]
        e2e = np.array([r["end_to_end"] for r in rows])
        timed = {s: [r["seconds"][s] for r in rows if s in r["seconds"]] for s in STAGES}
        stage = {s: float(np.mean(v)) if v else None for s, v in timed.items()}  # None: not measured
        slices = float(np.mean([r["work"]["slices_run"] for r in rows]))
        windows = float(np.mean([r["work"]["windows_run"] for r in rows]))
        f2d, f3d = slices * flops["2d_per_slice"], windows * flops["3d_per_window"]
        rate = {"2d": f2d / stage["2d"] / 1e9 if stage["2d"] else None,
                "3d": f3d / stage["3d"] / 1e9 if stage["3d"] else None,
                "networks": (f2d + f3d) / (stage["2d"] + stage["3d"]) / 1e9}
        networks = stage["2d"] + stage["3d"]
        precision = stage_precisions(run, default)
        peak = {k: peaks[precision[k]]["gflops"] for k in ROLES}
        # each stage's FLOPs at the peak of the precision it ran in: the networks' floor
        network_floor = f2d / 1e9 / peak["2d"] + f3d / 1e9 / peak["3d"]
        share = {k: (rate[k] / peak[k] if rate[k] else None) for k in ROLES}
        share["networks"] = network_floor / networks if networks else None
        dices = run["dice_vs_" + reference]
        body = run.get("dice_on_body_slices")
        scored = [d for d in (dices if body is None else body) if d is not None]
        summary = {
            "stage_seconds": stage, "end_to_end_p50": float(np.percentile(e2e, 50)),
            "end_to_end_p95": float(np.percentile(e2e, 95)), "end_to_end_mean": float(e2e.mean()),
            "studies_per_minute_one_at_a_time": 60.0 / float(e2e.mean()),
            "peak_rss_mb": run["peak_rss_mb"], "peak_device_mb": run.get("peak_device_mb"), "slices_run_mean": slices, "windows_run_mean": windows,
            "gflop_2d": f2d / 1e9, "gflop_3d": f3d / 1e9, "gflops_achieved": rate, "precision": precision,
            "share_of_matmul_peak": share,
            "outside_networks_share": 1.0 - networks / float(e2e.mean()),
            # the physical floor of this pipeline's work: its network FLOPs at the matmul peak,
            # plus what it spent outside the networks
            "floor_seconds": network_floor + float(e2e.mean()) - networks,
            "dice_vs_reference": dices, "dice_on_body_slices": body, "masks_both_empty": sum(d is None for d in dices),
            "comparison_void": any(d < 0.995 for d in scored),
            # resampling to the networks' spacing and back, as a share of end to end (None: not measured)
            "resample_share": stage["resample"] / float(e2e.mean()) if stage["resample"] is not None else None,
            "spacing": rows[0].get("spacing"),
            f"time_over_{reference}": float(e2e.mean()) / ref_e2e,
        }
        if "pipelined_seconds" in run:
            summary["studies_per_minute_pipelined"] = 60.0 * len(rows) / run["pipelined_seconds"]
            summary["pipelined_failed"] = run["pipelined_failed"]
        if "backend" in run:
            summary["backend"] = {k: run["backend"].get(k) for k in ("name", "version", "precision", "files", "networks")}
        out[name] = summary
    return out


def _fmt(v, digits: int = 2) -> str:
    return "-" if v is None else f"{v:.{digits}f}"


def markdown(report: dict) -> str:
    m, a, ref = report["machine"], report["args"], report["reference"]
    pipes = report["pipelines"]
    lines = [f"# Benchmark {report['date']}: {m['gpu'] or m['cpu']}", "",
             f"{m['cores']} cores ({m['cpu']}; flags {' '.join(m.get('cpu_flags', [])) or '?'}; bf16 unit "
             f"{m.get('bf16_unit', '?')}), GPU: {m['gpu'] or 'none'}; Python {m['python']}, numpy {m['numpy']}, "
             f"onnxruntime {m['onnxruntime']}, openvino {m.get('openvino')}, torch {m['torch']}, monai {m['monai']}.", "",
             f"`{a['preset']}` preset, {a['scans']} `{a['size']}` phantom studies (seed 4242), {a['threads']} threads; "
             f"weights `{report['weights']}`. Each pipeline in its own process, after a warm-up study. Matmul peak "
             f"({a['device']}, {report['matmul_peak']['n']}^3): " + ", ".join(
                 f"{k} {p['gflops']:.1f} GFLOP/s" for k, p in report.get("matmul_peaks", {"fp32": report["matmul_peak"]}).items())
             + "; each network stage is set against the peak of the precision it ran in. FLOPs "
             f"per 2D slice {report['flops_per_item']['2d_per_slice'] / 1e9:.2f} G, per 3D window "
             f"{report['flops_per_item']['3d_per_window'] / 1e9:.2f} G (convolutions, counted from the networks).", "",
             "Mean seconds per study:", "",
             "| pipeline | " + " | ".join(STAGES) + " | end to end p50 | p95 | time / " + ref + " |",
             "|---|" + "---|" * len(STAGES) + "---|---|---|"]
    for name, p in pipes.items():
        lines.append(f"| {name} | " + " | ".join(_fmt(p["stage_seconds"][s], 3) for s in STAGES)
                     + f" | {_fmt(p['end_to_end_p50'])} | {_fmt(p['end_to_end_p95'])} | {_fmt(p[f'time_over_{ref}'])}x |")
    lines += ["", "| pipeline | studies/min one at a time | pipelined | peak RSS MiB | slices run | windows run | "
              "2D GFLOP/s (% peak) | 3D GFLOP/s (% peak) | networks (% peak) | outside networks | floor s | "
              "mask Dice vs " + ref + " |", "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for name, p in pipes.items():
        g, s = p["gflops_achieved"], p["share_of_matmul_peak"]
        ran = p.get("precision", {})
        cells = [f"{_fmt(g[k], 1)} ({_fmt(100 * s[k] if s[k] else None, 0)}%{' ' + ran[k] if k in ran else ''})"
                 for k in ("2d", "3d", "networks")]
        dices = [d for d in p["dice_vs_reference"] if d is not None]
        check = ("VOID (Dice < 0.995)" if p["comparison_void"] else "valid") + (
            f"; min {min(dices):.4f}" if dices else "; all masks empty") + (
            f", {p['masks_both_empty']} both empty" if p["masks_both_empty"] and dices else "")
        if p["dice_on_body_slices"] is not None:
            body = [d for d in p["dice_on_body_slices"] if d is not None]
            check += f"; on body slices min {min(body):.4f}" if body else "; body slices empty"
        if name == ref:
            check = "reference"
        lines.append(f"| {name} | {_fmt(p['studies_per_minute_one_at_a_time'])} | "
                     f"{_fmt(p.get('studies_per_minute_pipelined'))} | {p['peak_rss_mb']:.0f} | "
                     f"{p['slices_run_mean']:.0f} | {p['windows_run_mean']:.0f} | " + " | ".join(cells)
                     + f" | {100 * p['outside_networks_share']:.1f}% | {_fmt(p['floor_seconds'])} | {check} |")
    lines += ["", f"The mask check's reference `{ref}` is our pipeline with air skipping off (every slice and "
              "window, as the peers run them); every pipeline's masks are compared with it on the whole volume. "
              "Ours with air skipping leaves the cue at 0 on coronal slices without body, so it is also compared "
              "on the slices that hold body (where a trained network's cue is 0 anyway). `floor s`: the network "
              "FLOPs the pipeline ran, at the matmul peak, plus its time outside the networks (the fastest that "
              "pipeline's work can be done here).", "",
              "Ratios (end to end, mean; higher is better for ours):", ""]
    for peer in [n for n in pipes if not n.startswith("ours-")]:
        lines.append(f"- {ref} (air not skipped) vs {peer}: {pipes[peer]['end_to_end_mean'] / pipes[ref]['end_to_end_mean']:.2f}x")
    ours = [n for n in pipes if n.startswith("ours-") and n != ref]
    peers = [n for n in pipes if not n.startswith("ours-")]
    for o in ours:
        ran_bf16 = "bf16" in pipes[o].get("precision", {}).values()
        for peer in peers:
            r = pipes[peer]["end_to_end_mean"] / pipes[o]["end_to_end_mean"]
            mem = pipes[o]["peak_rss_mb"] <= pipes[peer]["peak_rss_mb"]
            target = speedup_target(m.get("bf16_unit", "none"), ran_bf16, peer)
            lines.append(f"- {o} vs {peer}: **{r:.2f}x** faster (target >= {target:g}x on this CPU"
                         f"{' with bf16 (' + m.get('bf16_unit', '?') + ')' if ran_bf16 else ', fp32'}: "
                         f"{'met' if r >= target else 'NOT met'}); peak memory "
                         f"{pipes[o]['peak_rss_mb']:.0f} vs {pipes[peer]['peak_rss_mb']:.0f} MiB "
                         f"({'at most the peer' if mem else 'MORE than the peer'}); at the matmul peak "
                         f"the work ours ran would take {pipes[o]['floor_seconds']:.2f} s, so it can be at most "
                         f"{pipes[peer]['end_to_end_mean'] / pipes[o]['floor_seconds']:.2f}x faster than this "
                         f"{peer} run")
        share = pipes[o]["share_of_matmul_peak"]["networks"]
        lines.append(f"- {o}: network stages at {100 * share:.0f}% of the matmul peak of the precision each ran "
                     f"in (target >= "
                     f"{100 * CPU_TARGETS['network_share_of_peak']:.0f}%: "
                     f"{'met' if share >= CPU_TARGETS['network_share_of_peak'] else 'NOT met'})")
    spacing = next((p["spacing"] for p in pipes.values() if p.get("spacing")), None)
    if spacing:
        lines += ["", f"Network spacing {spacing['network_spacing_zyx_mm']} mm (z, y, x), studies at "
                  f"{spacing['native_spacing_zyx_mm']} mm: " + ("resampled to it (PET Keys cubic, CT linear) and the "
                  "3D probabilities and cue back (linear) before the threshold; `resample` is both ways. Share of "
                  "end to end: " + ", ".join(f"{n} {100 * p['resample_share']:.1f}%" for n, p in pipes.items()
                                             if p["resample_share"] is not None) + "."
                  if spacing["resampled"] else "the same grid, nothing resampled.")]
    if a.get("in_memory"):
        lines += ["", "In memory (`--in-memory`): the studies were generated as arrays; nothing was read or "
                  "written as image files, so read, write and the pipelined run are not measured (`-`)."]
    lines += ["", report.get("plot") or f"![stage breakdown]({report['stem']}.png)", ""]
    return "\n".join(lines)


def plot(report: dict, path: Path) -> None:
    import matplotlib  # extra `bench`; write_report says when it is missing

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pipes = report["pipelines"]
    names = list(pipes)
    fig, ax = plt.subplots(figsize=(8, 0.6 * len(names) + 1.5))
    left = np.zeros(len(names))
    for stage in STAGES:
        values = np.array([pipes[n]["stage_seconds"][stage] or 0.0 for n in names])
        ax.barh(names, values, left=left, label=stage)
        left += values
    ax.set_xlabel("seconds per study (mean)")
    ax.set_title(f"{report['args']['preset']} preset, {report['args']['size']} studies: stage breakdown")
    ax.invert_yaxis()
    ax.legend(ncol=len(STAGES), fontsize="small", loc="lower center", bbox_to_anchor=(0.5, 1.08))
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def write_report(report: dict, out: Path) -> dict:
    """``<device>-<date>.json``, ``.md`` and ``.png`` in ``out`` (``<device>-<date>-2`` and so on
    when a report of that day is there: an earlier report is never overwritten)."""
    out.mkdir(parents=True, exist_ok=True)
    report["slug"] = device_slug(report["machine"])
    base = f"{report['slug']}-{report['date']}"
    name, n = base, 1
    while any((out / f"{name}.{k}").exists() for k in ("json", "md", "png")):
        n += 1
        name = f"{base}-{n}"
    report["stem"] = name
    paths = {k: out / f"{name}.{k}" for k in ("json", "md", "png")}
    try:
        plot(report, paths["png"])
    except ImportError as exc:
        report["plot"] = f"not drawn: {exc} (install the extra `bench` for matplotlib)"
        del paths["png"]
        print(f"stage breakdown plot {report['plot']}")
    paths["json"].write_text(json.dumps(report, indent=2) + "\n")
    paths["md"].write_text(markdown(report))
    return paths
