"""The training loop shared by both networks: SGD + poly decay, checkpoints, resume, CSV log.

Every epoch draws its batches from generators seeded by (seed, epoch), so a run resumed
from a checkpoint continues exactly as the uninterrupted run would have.
"""

from __future__ import annotations

import csv
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LoopConfig:
    """What one training run does."""

    name: str                 # "loc2d" or "seg3d": names the checkpoint and the log
    epochs: int
    iters: int                # batches per epoch
    lr: float
    momentum: float
    weight_decay: float
    out_dir: Path
    device: str = "cpu"
    seed: int = 0
    poly_exponent: float = 0.9
    amp: str = "off"          # "off", "fp16" (CUDA, with loss scaling) or "bf16" (see resolve_amp)


AMP_CHOICES = ("auto", "off", "fp16", "bf16")


def cpu_has_native_bf16() -> bool:
    """Whether oneDNN runs bfloat16 natively on this CPU (AVX512-BF16 or AMX)."""
    return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


def resolve_amp(choice: str, device: str, native_bf16: bool | None = None) -> str:
    """The mixed precision a run uses: ``auto`` picks fp16 on CUDA, bf16 on a CPU with native
    bfloat16 (about 1.7x faster lite 3D steps on this project's 2-core AVX512-BF16 CPU),
    otherwise off. ``native_bf16`` defaults to asking oneDNN.

    Raises:
        ValueError: an unknown choice, fp16 on a CPU, or bf16 on a CPU without native bf16
            (emulated bf16 is slower than fp32).
    """
    if choice not in AMP_CHOICES:
        raise ValueError(f"--amp {choice!r}: use one of {', '.join(AMP_CHOICES)}")
    if device.startswith("cuda"):
        return "fp16" if choice == "auto" else choice
    if native_bf16 is None:
        native_bf16 = cpu_has_native_bf16()
    if choice == "auto":
        return "bf16" if native_bf16 else "off"
    if choice == "fp16":
        raise ValueError("--amp fp16 needs --device cuda; on the CPU use bf16 or off")
    if choice == "bf16" and not native_bf16:
        raise ValueError("--amp bf16: this CPU has no native bfloat16 (oneDNN reports none); use --amp off")
    return choice


def poly_lr(base: float, epoch: int, epochs: int, exponent: float = 0.9) -> float:
    """Learning rate of ``epoch`` (0-based) under poly decay."""
    return base * (1.0 - epoch / epochs) ** exponent


def checkpoint_path(cfg: LoopConfig) -> Path:
    return cfg.out_dir / "checkpoints" / f"{cfg.name}.pt"


def make_optimizer(model: torch.nn.Module, cfg: LoopConfig) -> torch.optim.SGD:
    """SGD with Nesterov momentum (nnU-Net's optimiser)."""
    return torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum,
                           weight_decay=cfg.weight_decay, nesterov=True)


StepFn = Callable[[np.random.Generator, torch.Generator], torch.Tensor]


def train(model: torch.nn.Module, step_loss: StepFn, cfg: LoopConfig, resume: bool = False) -> list[float]:
    """Train ``model`` in place; ``step_loss(rng, torch_gen)`` draws one batch and returns its loss.

    Returns:
        the mean loss of every epoch run in this call.

    Raises:
        FileNotFoundError: ``resume`` without a checkpoint.
    """
    model.to(cfg.device)
    optimizer = make_optimizer(model, cfg)
    amp_dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(cfg.amp)
    device_type = "cuda" if cfg.device.startswith("cuda") else "cpu"
    scaler = torch.amp.GradScaler("cuda", enabled=cfg.amp == "fp16")  # bf16 has fp32's range: no scaling
    first_epoch = 0
    ckpt = checkpoint_path(cfg)
    if resume:
        if not ckpt.exists():
            raise FileNotFoundError(f"{ckpt}: no checkpoint to resume from; run without --resume")
        state = torch.load(ckpt, map_location=cfg.device, weights_only=True)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scaler.load_state_dict(state["scaler"])
        first_epoch = int(state["epoch"]) + 1
        log.info("%s: resuming after epoch %d of %d", cfg.name, first_epoch, cfg.epochs)
    log_path = cfg.out_dir / f"{cfg.name}_log.csv"
    if first_epoch == 0 or not log_path.exists():
        log_path.parent.mkdir(parents=True, exist_ok=True)
        log_path.write_text("epoch,lr,loss,seconds\n")
    means = []
    for epoch in range(first_epoch, cfg.epochs):
        lr = poly_lr(cfg.lr, epoch, cfg.epochs, cfg.poly_exponent)
        for group in optimizer.param_groups:
            group["lr"] = lr
        rng = np.random.default_rng([cfg.seed, epoch])
        gen = torch.Generator().manual_seed(int(rng.integers(2**62)))
        model.train()
        losses, t0 = [], time.perf_counter()
        bar = tqdm(range(cfg.iters), desc=f"{cfg.name} {epoch + 1}/{cfg.epochs}", unit="batch", leave=False)
        for _ in bar:
            optimizer.zero_grad(set_to_none=True)
            with torch.autocast(device_type, dtype=amp_dtype, enabled=amp_dtype is not None):
                loss = step_loss(rng, gen)
            scaler.scale(loss).backward()
            scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(model.parameters(), 12.0)
            scaler.step(optimizer)
            scaler.update()
            losses.append(float(loss.detach()))
            bar.set_postfix(loss=f"{np.mean(losses[-20:]):.4f}")
        seconds = time.perf_counter() - t0
        means.append(float(np.mean(losses)))
        log.info("%s epoch %d/%d: loss %.4f, lr %.2e, %.1f s", cfg.name, epoch + 1, cfg.epochs, means[-1], lr, seconds)
        with log_path.open("a", newline="") as f:
            csv.writer(f).writerow([epoch + 1, f"{lr:.6g}", f"{means[-1]:.6f}", f"{seconds:.2f}"])
        _save_checkpoint(ckpt, model, optimizer, scaler, epoch)
    return means


def _save_checkpoint(path: Path, model, optimizer, scaler, epoch: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.partial")
    torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                "scaler": scaler.state_dict(), "epoch": epoch}, tmp)
    tmp.replace(path)
