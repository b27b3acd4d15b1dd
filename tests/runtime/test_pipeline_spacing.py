"""The host pipeline at the networks' spacing: studies at the network spacing run exactly as
before; others are resampled in (PET Keys cubic, CT linear), run on the network grid, and the
maps come back linearly before the threshold (references: float64 numpy and SimpleITK)."""

import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("onnx")

from l2s_engine.phantoms import make_phantom  # noqa: E402
from l2s_engine.phantoms.study import SIZES  # noqa: E402
from l2s_engine.core import InferOptions  # noqa: E402
from l2s_engine.pipeline import HostEngine  # noqa: E402
from l2s_engine.postprocess import fuse_paper  # noqa: E402
from l2s_engine.preprocess import intensity_window  # noqa: E402
from l2s_engine.resample import grid_map, spacing_zyx  # noqa: E402
from l2s_engine.stages import run_loc2d, run_seg3d  # noqa: E402

from .engines import fast_engine  # noqa: E402
from .test_resample import sitk_resample_linear  # noqa: E402


def keys_float64(volume: np.ndarray, steps, shape_out) -> np.ndarray:
    """Keys (a = -0.5) cubic convolution, separable, in float64; edge voxels repeat."""
    v = volume.astype(np.float64)
    for axis, (step, m) in enumerate(zip(steps, shape_out)):
        n = v.shape[axis]
        pos = np.minimum(np.arange(m) * step, n - 1)
        base = np.floor(pos).astype(int)
        total = 0.0
        for d in (-1, 0, 1, 2):
            t = np.abs(pos - (base + d))
            w = np.where(t <= 1, 1.5 * t ** 3 - 2.5 * t ** 2 + 1, np.where(t < 2, -0.5 * t ** 3 + 2.5 * t ** 2 - 4 * t + 2, 0))
            shape = [1, 1, 1]
            shape[axis] = m
            total = total + np.take(v, np.clip(base + d, 0, n - 1), axis=axis) * w.reshape(shape)
        v = total
    return v


def by_hand(phantom, engine_dir_native: Path, network_zyx, options: InferOptions):
    """Resample by hand (PET: float64 Keys; CT: SimpleITK linear), run an engine whose spacing
    is the network grid's (so it resamples nothing), bring p3d and the cue back with SimpleITK
    linear, fuse in float64."""
    g = phantom.geometry
    grid = grid_map(g, network_zyx)
    steps = [t / s for t, s in zip(spacing_zyx(grid.network), spacing_zyx(g))]
    pet = keys_float64(phantom.pet, steps, grid.network.shape).astype(np.float32)
    ct = sitk_resample_linear(phantom.ct, g, grid.network)
    assert np.isfinite(ct).mean() > 0.9
    # past the native grid's last half voxel SimpleITK has no value (ours repeats the edge
    # voxel): air there, and those voxels' neighbourhood is left out of the comparisons
    ct = np.where(np.isfinite(ct), ct, -1000.0).astype(np.float32)
    with HostEngine(engine_dir_native, options) as engine:
        run = engine.segment(pet, ct, grid.network)
    assert not run.spacing["resampled"]
    back = {name: sitk_resample_linear(getattr(run, name), grid.network, g) for name in ("p3d", "cue")}
    p, c = back["p3d"], back["cue"]
    return np.where(c > 0.5, p > 0.1, p > 0.5), back, run


def interior(shape, margin: int = 3) -> np.ndarray:
    """Voxels at least ``margin`` voxels from the far faces (where the grids' ends differ)."""
    inside = np.zeros(shape, bool)
    inside[:shape[0] - margin, :shape[1] - margin, :shape[2] - margin] = True
    return inside


def test_studies_at_the_network_spacing_run_exactly_as_before(tmp_path):
    phantom = make_phantom(0, seed=1000, size="small")
    near = tuple(s * (1 + 5e-4) for s in SIZES["small"].spacing)  # within SPACING_RTOL
    for spacing in ("small", near):
        with HostEngine(fast_engine(tmp_path / str(spacing), spacing=spacing), InferOptions(full_cue=True)) as engine:
            got = engine.segment(phantom.pet, phantom.ct, phantom.geometry)
            # the pipeline before the network spacing existed: the stages on the native arrays
            plan = engine.plan(phantom.pet, phantom.ct, phantom.geometry)
            pet = intensity_window(phantom.pet, *engine.spec.seg3d.suv_window)
            p3d = run_seg3d(engine.nets["seg3d"], pet, intensity_window(phantom.ct, *engine.spec.seg3d.ct_window),
                            plan.windows, plan.window_batches())
            cue = run_loc2d(engine.nets["loc2d"], pet, phantom.geometry, engine.spec.loc2d, plan.slice_batches())
        np.testing.assert_array_equal(got.p3d, p3d)
        np.testing.assert_array_equal(got.cue, cue)
        np.testing.assert_array_equal(got.mask, fuse_paper(p3d, cue, engine.fusion))
        assert got.mask.sum() > 0
        assert got.spacing["resampled"] is False and got.spacing["native_shape"] == got.spacing["network_shape"]
        assert got.timings["resample"] < 0.05


@pytest.mark.parametrize("size,network_zyx", [("tiny", (7.65, 6.0, 6.0)),     # finer: 2x up
                                              ("small", (9.0, 7.0, 5.5))])   # coarser, not a whole ratio
def test_other_spacings_equal_resampling_by_hand(tmp_path, size, network_zyx):
    pytest.importorskip("SimpleITK")
    phantom = make_phantom(0, seed=1000, size=size)
    options = InferOptions(full_cue=True, skip_air=False)
    with HostEngine(fast_engine(tmp_path / "net", spacing=network_zyx), options) as engine:
        got = engine.segment(phantom.pet, phantom.ct, phantom.geometry)
    expected, back, run = by_hand(phantom, fast_engine(tmp_path / "native", spacing=network_zyx), network_zyx, options)
    assert got.mask.shape == got.p3d.shape == got.cue.shape == phantom.pet.shape  # the native grid
    inner = interior(got.mask.shape) & np.isfinite(back["p3d"]) & np.isfinite(back["cue"])
    assert inner.mean() > 0.75
    np.testing.assert_allclose(got.p3d[inner], back["p3d"][inner], atol=2e-4)
    np.testing.assert_allclose(got.cue[inner], back["cue"][inner], atol=2e-4)
    # masks agree wherever the probability is not within float noise of a threshold
    p = back["p3d"]
    clear = inner & (np.abs(p - 0.1) > 1e-3) & (np.abs(p - 0.5) > 1e-3) & (np.abs(back["cue"] - 0.5) > 1e-3)
    np.testing.assert_array_equal(got.mask[clear], expected[clear])
    assert expected[clear].sum() > 20  # lesions or hot organs were segmented
    info = got.spacing
    assert info["resampled"] and info["network_spacing_zyx_mm"] == list(network_zyx)
    np.testing.assert_allclose(info["native_spacing_zyx_mm"], SIZES[size].spacing)
    assert info["network_shape"] == list(run.mask.shape) != info["native_shape"]
    assert got.timings["resample"] == pytest.approx(info["resample_seconds"], abs=1e-4)
    assert got.work["windows_total"] == run.work["windows_total"]  # the windows of the network grid


def test_pointwise_network_by_hand(tmp_path):
    """The stand-in 3D net is pointwise (logit = 12 * mean(PET, CT windows) - 6), so its blended
    probability on the network grid is known voxel by voxel: sigmoid of the resampled inputs."""
    pytest.importorskip("SimpleITK")
    phantom = make_phantom(2, seed=1000, size="tiny")
    network_zyx = (10.0, 8.0, 8.0)
    with HostEngine(fast_engine(tmp_path / "e", spacing=network_zyx), InferOptions(skip_air=False)) as engine:
        got = engine.segment(phantom.pet, phantom.ct, phantom.geometry)
    grid = grid_map(phantom.geometry, network_zyx)
    steps = [t / s for t, s in zip(network_zyx, SIZES["tiny"].spacing)]
    pet = np.clip(keys_float64(phantom.pet, steps, grid.network.shape), 0, 15) / 15 * 2 - 1
    ct = np.clip(sitk_resample_linear(phantom.ct, phantom.geometry, grid.network), -100, 250) / 350 * 2 - 1 + 200 / 350
    ct = np.where(np.isfinite(ct), ct, -1.0)
    p_net = 1 / (1 + np.exp(-(12 * (pet + ct) / 2 - 6)))
    p_back = sitk_resample_linear(p_net, grid.network, phantom.geometry)
    inner = np.isfinite(p_back) & interior(p_back.shape)
    assert inner.mean() > 0.75
    np.testing.assert_allclose(got.p3d[inner], p_back[inner], atol=1e-4)


def test_on_demand_cue_gives_the_whole_cue_mask_after_resampling(tmp_path):
    phantom = make_phantom(0, seed=1000, size="small")
    engine_dir = fast_engine(tmp_path / "e", spacing=(5.0, 3.5, 6.3))
    with HostEngine(engine_dir, InferOptions(batch_2d=4)) as lazy, HostEngine(engine_dir, InferOptions(full_cue=True)) as full:
        got = lazy.segment(phantom.pet, phantom.ct, phantom.geometry)
        ref = full.segment(phantom.pet, phantom.ct, phantom.geometry)
    np.testing.assert_array_equal(got.p3d, ref.p3d)
    p, c = ref.p3d.astype(np.float64), ref.cue.astype(np.float64)
    expected = np.where(c > 0.5, p > 0.1, p > 0.5)
    np.testing.assert_array_equal(got.mask, expected)
    assert int((expected != (p > 0.5)).sum()) > 0  # the cue decided some voxels
    assert 0 < got.work["slices_run"] < ref.work["slices_run"]


def test_report_gives_native_and_network_spacing_and_resampling_time(tmp_path):
    pytest.importorskip("SimpleITK")
    from l2s_engine.cli import infer_main
    from l2s_engine.io import load_label
    from l2s_engine.phantoms.files import write_study

    folder = write_study(make_phantom(0, seed=3, size="tiny"), tmp_path / "in")
    engine = fast_engine(tmp_path / "engine", spacing=(10.0, 9.0, 7.0))
    out = tmp_path / "out"
    assert infer_main(["--engine", str(engine), str(tmp_path / "in"), "-o", str(out), "-q"]) == 0
    (study,) = json.loads((out / "report.json").read_text())["studies"]
    spacing = study["spacing"]
    np.testing.assert_allclose(spacing["native_spacing_zyx_mm"], SIZES["tiny"].spacing, rtol=1e-6)
    assert spacing["network_spacing_zyx_mm"] == [10.0, 9.0, 7.0] and spacing["resampled"] is True
    assert spacing["network_shape"] == [98, 53, 82]  # 64 * 15.3 / 10, 40 * 12 / 9, 48 * 12 / 7
    assert study["timings"]["resample"] == pytest.approx(spacing["resample_seconds"], abs=1e-4) and spacing["resample_seconds"] > 0
    mask, grid = load_label(Path(study["outputs"]["mask"]))
    _, pet_grid = load_label(folder / "SUV.nii.gz")
    assert grid.same_grid(pet_grid) and mask.shape == SIZES["tiny"].shape


def test_l2s_infer_refuses_an_engine_without_spacing_and_names_the_fix(tmp_path, capsys):
    from l2s_engine.cli import infer_main
    from l2s_engine.manifest import MANIFEST

    engine = fast_engine(tmp_path / "engine")
    data = json.loads((engine / MANIFEST).read_text())
    del data["spec"]["spacing_zyx_mm"]  # as exported before the field existed
    (engine / MANIFEST).write_text(json.dumps(data))
    (tmp_path / "in").mkdir()
    assert infer_main(["--engine", str(engine), str(tmp_path / "in"), "-o", str(tmp_path / "out"), "-q"]) == 2
    err = capsys.readouterr().err
    assert "no network spacing" in err and "l2s-export WEIGHTS_DIR --spacing Z,Y,X -o ENGINE_DIR" in err
