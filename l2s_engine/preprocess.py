"""Intensity normalisation and the coronal-slice transform (numpy only).

Training and inference both call these functions, so what a network saw in training is what
it sees in deployment.
"""

from __future__ import annotations

import numpy as np

from .geometry import Geometry


def intensity_window(values: np.ndarray, low: float, high: float) -> np.ndarray:
    """Clip to [low, high] and map linearly to [-1, 1], as float32."""
    out = np.clip(values, low, high).astype(np.float32, copy=True)
    out -= np.float32(low)
    out *= np.float32(2.0 / (high - low))
    out -= np.float32(1.0)
    return out


def coronal_axes(geometry: Geometry) -> tuple[int, int, int]:
    """(coronal, rows, cols) numpy axes: anterior-posterior, head-foot, lateral."""
    ap, si = geometry.anterior_posterior_axis(), geometry.superior_inferior_axis()
    if ap == si:
        raise ValueError(f"cannot tell coronal planes in direction {geometry.direction}")
    return ap, si, 3 - ap - si


def to_coronal(volume: np.ndarray, geometry: Geometry) -> np.ndarray:
    """A view of ``volume`` as a stack of coronal slices (n_coronal, rows, cols)."""
    return np.transpose(volume, coronal_axes(geometry))


def from_coronal(stack: np.ndarray, geometry: Geometry) -> np.ndarray:
    """The inverse of ``to_coronal``: a (z, y, x) view of a coronal stack."""
    return np.transpose(stack, np.argsort(coronal_axes(geometry)))


def _linear_weights(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Source indices and weights of half-pixel-centred linear resampling (align_corners=False)."""
    pos = (np.arange(n_out, dtype=np.float64) + 0.5) * (n_in / n_out) - 0.5
    pos = np.clip(pos, 0.0, n_in - 1)
    i0 = np.floor(pos).astype(np.int64)
    i1 = np.minimum(i0 + 1, n_in - 1)
    w1 = (pos - i0).astype(np.float32)
    return i0, i1, w1


def resize_bilinear(slices: np.ndarray, out_hw: tuple[int, int]) -> np.ndarray:
    """Bilinear resize of the last two axes (half-pixel centres, edge-clamped), float32.

    Equals torch ``interpolate(mode="bilinear", align_corners=False)`` when enlarging; when
    shrinking it samples without antialiasing, like that function.
    """
    x = np.asarray(slices, dtype=np.float32)
    for axis, n_out in ((-2, out_hw[0]), (-1, out_hw[1])):
        n_in = x.shape[axis]
        if n_in == n_out:
            continue
        i0, i1, w1 = _linear_weights(n_in, n_out)
        a, b = np.take(x, i0, axis=axis), np.take(x, i1, axis=axis)
        shape = [1] * x.ndim
        shape[axis] = n_out
        x = a + (b - a) * w1.reshape(shape)
    return x


def slice_context(n_slices: int, index: np.ndarray, in_slices: int) -> np.ndarray:
    """Indices of the ``in_slices`` neighbours centred on each index, clamped at the ends."""
    half = in_slices // 2
    offsets = np.arange(-half, half + 1)
    return np.clip(np.asarray(index)[:, None] + offsets[None, :], 0, n_slices - 1)


def slices_to_input(coronal: np.ndarray, index: np.ndarray, resize: tuple[int, int],
                    crop: tuple[int, int, int, int], in_slices: int) -> np.ndarray:
    """Network input for coronal slices ``index``: (len(index), in_slices, H, W) float32.

    ``coronal`` is a normalised coronal stack (n_coronal, rows, cols).
    """
    ctx = slice_context(coronal.shape[0], index, in_slices)
    r0, r1, c0, c1 = crop
    resized = resize_bilinear(coronal[ctx.ravel()], resize)[:, r0:r1, c0:c1]
    return np.ascontiguousarray(resized.reshape(len(ctx), in_slices, r1 - r0, c1 - c0))


def slices_from_output(probs: np.ndarray, resize: tuple[int, int], crop: tuple[int, int, int, int],
                       rows_cols: tuple[int, int]) -> np.ndarray:
    """Back from network output (N, H, W) to native coronal slices (N, rows, cols).

    Outside the crop the probability is 0; the resized frame is resampled (bilinear) to the
    slice's native size.
    """
    r0, r1, c0, c1 = crop
    full = np.zeros((probs.shape[0], *resize), dtype=np.float32)
    full[:, r0:r1, c0:c1] = probs
    return resize_bilinear(full, rows_cols)
