"""Which interpolation brings PET to the networks' spacing (the numbers in l2s_engine/resample.py).

Hot spheres of 4-30 mm (SUV 3-20 over a background of 1), blurred by a 6.5 mm FWHM PSF, are
sampled analytically on a native grid and, as the reference, directly on the network grid
(the same origin). The native samples are resampled to the network grid with
``l2s_engine.resample`` (linear; Keys cubic) and, where scipy is installed, a cubic B-spline
(``scipy.ndimage.map_coordinates(order=3)``, nnU-Net's order for images). Printed: the mean,
largest and mean signed error of SUVmax, and the RMSE over the cube, per grid pair; and the
time of each on a `full` study resampled to the demo weights' spacing.

    python scripts/measure_resampling.py
"""

from __future__ import annotations

import time

import numpy as np
from scipy.special import erf

from l2s_engine.geometry import Geometry
from l2s_engine.resample import grid_map, resample

FWHM_MM = 6.5
PAIRS = {  # name: (native z, y, x mm), (network z, y, x mm)
    "full (autoPET grid) -> demo weights (small)": ((3.0, 2.0364, 2.0364), (6.1, 4.2, 4.2)),
    "clinical 4 mm -> autoPET grid (paper)": ((4.0, 4.0, 4.0), (3.0, 2.0364, 2.0364)),
    "clinical 5 mm -> autoPET grid (paper)": ((5.0, 5.0, 5.0), (3.0, 2.0364, 2.0364)),
}


def blurred_ball(r: np.ndarray, radius: float, sigma: float) -> np.ndarray:
    """A uniform ball convolved with an isotropic Gaussian, at distance ``r`` from its centre."""
    r = np.maximum(r, 1e-9)
    s2 = sigma * np.sqrt(2.0)
    inner = 0.5 * (erf((radius - r) / s2) + erf((radius + r) / s2))
    edge = sigma / (r * np.sqrt(2 * np.pi)) * (np.exp(-(radius - r) ** 2 / (2 * sigma ** 2))
                                               - np.exp(-(radius + r) ** 2 / (2 * sigma ** 2)))
    return inner - edge


def render(shape, spacing, centre, radius, suv) -> np.ndarray:
    axes = [np.arange(n) * s - c for n, s, c in zip(shape, spacing, centre)]
    z, y, x = np.meshgrid(*axes, indexing="ij")
    return 1.0 + (suv - 1.0) * blurred_ball(np.sqrt(z ** 2 + y ** 2 + x ** 2), radius, FWHM_MM / 2.3548)


def methods(native_zyx, network_zyx, shape):
    geometry = Geometry(size=tuple(reversed(shape)), spacing=tuple(reversed(native_zyx)), origin=(0.0, 0.0, 0.0))
    grid = grid_map(geometry, network_zyx)
    out = {"linear": lambda v: resample(v, grid.tables("to_network", "linear")),
           "Keys cubic": lambda v: resample(v, grid.tables("to_network", "cubic"))}
    try:
        from scipy.ndimage import map_coordinates

        coords = np.meshgrid(*[np.minimum(np.arange(m) * t / s, n - 1) for m, t, s, n in
                               zip(grid.network.shape, network_zyx, native_zyx, shape)], indexing="ij")
        out["cubic B-spline"] = lambda v: map_coordinates(v, coords, order=3, mode="nearest")
    except ImportError:
        pass
    return grid, out


def accuracy(native_zyx, network_zyx, trials: int = 10, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    extent = 120.0
    shape = tuple(int(extent / s) for s in native_zyx)
    grid, fns = methods(native_zyx, network_zyx, shape)
    errors = {name: [] for name in fns}
    rmse = {name: [] for name in fns}
    for diameter in (4, 6, 8, 10, 15, 20, 30):
        for _ in range(trials):
            centre = extent / 2 + rng.uniform(-5, 5, 3)
            suv = rng.uniform(3, 20)
            native = render(shape, native_zyx, centre, diameter / 2, suv).astype(np.float32)
            truth = render(grid.network.shape, network_zyx, centre, diameter / 2, suv)
            for name, fn in fns.items():
                got = np.asarray(fn(native), np.float64)
                errors[name].append((got.max() - truth.max()) / truth.max())
                rmse[name].append(float(np.sqrt(np.mean((got - truth) ** 2))))
    return {name: (100 * np.mean(np.abs(e)), 100 * np.max(np.abs(e)), 100 * np.mean(e), np.mean(rmse[name]))
            for name, e in errors.items()}


def timing() -> None:
    from l2s_engine.phantoms import make_phantom

    study = make_phantom(0, seed=4242, size="full")
    grid = grid_map(study.geometry, (6.1, 4.2, 4.2))
    for order, volume in (("cubic", study.pet), ("linear", study.ct)):
        start = time.perf_counter()
        resample(volume, grid.tables("to_network", order))
        print(f"  full {study.pet.shape} -> {grid.network.shape}, {order}: {time.perf_counter() - start:.3f} s")
    maps = np.random.default_rng(0).uniform(size=grid.network.shape).astype(np.float32)
    start = time.perf_counter()
    grid.to_native(maps)
    print(f"  a map back onto {study.pet.shape}, linear: {time.perf_counter() - start:.3f} s")


def main() -> None:
    for name, (native, network) in PAIRS.items():
        print(name)
        for method, (mean, worst, bias, rmse) in accuracy(native, network).items():
            print(f"  {method:>15}: |dSUVmax| mean {mean:5.2f}%  max {worst:5.2f}%  bias {bias:+6.2f}%  "
                  f"RMSE {rmse:.4f} SUV")
    timing()


if __name__ == "__main__":
    main()
