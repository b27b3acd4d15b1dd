"""The physical floor: FLOPs of a network pass (counted from the network) and the machine's
measured matmul peak."""

from __future__ import annotations

import math
import time

import numpy as np


def conv_flops(model, sample) -> int:
    """FLOPs (2 x multiply-adds) of the convolution and linear layers in one forward pass of
    ``sample``: what dominates these U-Nets. Normalisations, activations, pooling and
    resampling are not counted (each a few operations per element, under 2% here)."""
    import torch
    from torch import nn

    total = 0

    def hook(module, inputs, output):
        nonlocal total
        if isinstance(module, (nn.Conv2d, nn.Conv3d)):
            per_output = (module.in_channels // module.groups) * math.prod(module.kernel_size)
            total += 2 * output.numel() * per_output
        elif isinstance(module, (nn.ConvTranspose2d, nn.ConvTranspose3d)):
            per_input = (module.out_channels // module.groups) * math.prod(module.kernel_size)
            total += 2 * inputs[0].numel() * per_input
        elif isinstance(module, nn.Linear):
            total += 2 * output.numel() * module.in_features

    handles = [m.register_forward_hook(hook) for m in model.modules()
               if isinstance(m, (nn.Conv2d, nn.Conv3d, nn.ConvTranspose2d, nn.ConvTranspose3d, nn.Linear))]
    try:
        with torch.inference_mode():
            model(sample)
    finally:
        for h in handles:
            h.remove()
    return total


def per_item_flops(model, input_shape: tuple[int, ...]) -> int:
    """FLOPs of one slice or window (the pass on a batch of one)."""
    import torch

    return conv_flops(model.eval(), torch.zeros((1, *input_shape[1:])))


def matmul_peak(n: int = 4096, repeats: int = 3, device: str = "cpu", precision: str = "fp32") -> dict:
    """Best matmul rate: float32 with numpy's BLAS on the CPU (all its threads), bfloat16 with
    torch on the CPU (oneDNN: AMX or AVX512-BF16 where present), float16 with torch on a CUDA
    device (the precision of our GPU pipeline)."""
    if device.startswith("cuda"):
        return _cuda_matmul_peak(device, 2 * n, repeats)
    if precision == "bf16":
        return _cpu_bf16_matmul_peak(n, repeats)
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((n, n), dtype=np.float32), rng.standard_normal((n, n), dtype=np.float32)
    return _rate(n, "float32", _best_seconds(lambda: a @ b, repeats))


def _best_seconds(step, repeats: int) -> float:
    """The shortest of ``repeats`` timed calls of ``step``, after one untimed warm-up call."""
    step()
    best = math.inf
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        best = min(best, time.perf_counter() - start)
    return best


def _rate(n: int, dtype: str, seconds: float) -> dict:
    return {"n": n, "dtype": dtype, "seconds": seconds, "gflops": 2.0 * n ** 3 / seconds / 1e9}


def _cuda_matmul_peak(device: str, n: int, repeats: int) -> dict:
    import torch

    a = torch.randn((n, n), device=device, dtype=torch.float16)
    b = torch.randn((n, n), device=device, dtype=torch.float16)
    a @ b
    torch.cuda.synchronize(device)
    best = math.inf
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(10):
            a @ b
        torch.cuda.synchronize(device)
        best = min(best, (time.perf_counter() - start) / 10)
    return {"n": n, "dtype": "float16", "seconds": best, "gflops": 2.0 * n ** 3 / best / 1e9}


def _cpu_bf16_matmul_peak(n: int, repeats: int) -> dict:
    import torch

    generator = torch.Generator().manual_seed(0)
    a = torch.randn((n, n), generator=generator).to(torch.bfloat16)
    b = torch.randn((n, n), generator=generator).to(torch.bfloat16)
    return _rate(n, "bfloat16", _best_seconds(lambda: a @ b, repeats))
