"""The host pipeline runs the 2D net only where the cue can change the mask (paper rule)."""

import numpy as np
import pytest

pytest.importorskip("onnx")

from l2s_engine.phantoms import make_phantom  # noqa: E402
from l2s_engine.core import InferOptions  # noqa: E402
from l2s_engine.pipeline import HostEngine  # noqa: E402
from l2s_engine.preprocess import to_coronal  # noqa: E402

from .engines import fast_engine  # noqa: E402


class Bar:
    """A progress callback that records its calls (done, total)."""

    def __init__(self):
        self.calls = []

    def __call__(self, done, total):
        self.calls.append((done, total))

    @property
    def n(self):
        return self.calls[-1][0]

    @property
    def total(self):
        return self.calls[-1][1]

    def ticks_one_by_one(self) -> bool:
        done = [d for d, _ in self.calls]
        return done[0] == 0 and all(b - a in (0, 1) for a, b in zip(done, done[1:]))


def test_same_mask_as_the_whole_cue_with_fewer_slices(tmp_path):
    engine_dir = fast_engine(tmp_path / "engine")
    options = InferOptions(batch_2d=3)
    decided = 0
    with HostEngine(engine_dir, options) as lazy, HostEngine(engine_dir, InferOptions(batch_2d=3, full_cue=True)) as full:
        assert lazy.describe()["cue"] == "on demand" and full.describe()["cue"] == "full"
        for index in (0, 2):
            phantom = make_phantom(index, seed=1000, size="small")
            bar = Bar()
            got = lazy.segment(phantom.pet, phantom.ct, phantom.geometry, progress=bar)
            ref = full.segment(phantom.pet, phantom.ct, phantom.geometry)
            # the paper rule in float64 on the whole cue: the reference mask
            p3d, cue = ref.p3d.astype(np.float64), ref.cue.astype(np.float64)
            expected = np.where(cue > 0.5, p3d > 0.1, p3d > 0.5)
            np.testing.assert_array_equal(got.mask, expected)
            decided += int((expected != (p3d > 0.5)).sum())  # voxels the cue changed
            run = got.work["slices_run"]
            assert got.work["slices_candidates"] == ref.work["slices_run"] > run > 0
            assert bar.n == bar.total  # the bar's total was cut to what ran
            assert bar.calls[0][1] > bar.total and bar.ticks_one_by_one()
            # the cue: the whole cue's values on the slices run, 0 on the others
            got_c, ref_c = to_coronal(got.cue, phantom.geometry), to_coronal(ref.cue, phantom.geometry)
            ran = np.flatnonzero(got_c.reshape(got_c.shape[0], -1).any(axis=1))
            assert len(ran) <= run
            np.testing.assert_array_equal(got_c[ran], ref_c[ran])
            band = (ref.p3d > 0.1) & (ref.p3d <= 0.5)
            assert not (band & (got.cue != ref.cue)).any()
    assert decided > 0  # the cue mattered somewhere, so skipping slices was tested


@pytest.mark.parametrize("options", [InferOptions(rule="components"), InferOptions(full_cue=True)],
                         ids=["components-rule", "full-cue"])
def test_components_rule_and_full_cue_run_every_body_slice(tmp_path, options):
    engine_dir = fast_engine(tmp_path / "engine")
    phantom = make_phantom(0, seed=1000, size="small")
    # coronal slices (planes of one anterior-posterior index) holding a body voxel: CT above
    # -500 HU or PET above 0.3 SUV, counted here along the geometry's anterior-posterior axis
    body = (phantom.ct > -500) | (phantom.pet > 0.3)
    ap = phantom.geometry.anterior_posterior_axis()
    body_slices = int(np.count_nonzero(body.any(axis=tuple(a for a in range(3) if a != ap))))
    assert 0 < body_slices < phantom.pet.shape[ap]  # the phantom has air slices to leave out
    with HostEngine(engine_dir, options) as engine:
        assert not engine.cue_on_demand and engine.describe()["cue"] == "full"
        bar = Bar()
        got = engine.segment(phantom.pet, phantom.ct, phantom.geometry, progress=bar)
    assert "slices_candidates" not in got.work
    assert got.work["slices_run"] == body_slices
    # every batch ticked: the body slices' 2D batches and the 3D batches
    assert bar.n == bar.total == -(-body_slices // options.batch_2d) + -(-got.work["windows_run"] // options.batch_3d)
    assert {total for _, total in bar.calls} == {bar.total} and bar.ticks_one_by_one()


def test_the_engines_own_rule_is_the_default_and_an_asked_rule_wins(tmp_path):
    import json

    engine_dir = fast_engine(tmp_path / "engine")
    manifest = json.loads((engine_dir / "manifest.json").read_text())
    assert manifest["spec"]["fusion"]["rule"] == "paper"
    with HostEngine(engine_dir) as engine:
        assert engine.options.rule == "paper" and engine.cue_on_demand
    manifest["spec"]["fusion"]["rule"] = "components"
    (engine_dir / "manifest.json").write_text(json.dumps(manifest))
    with HostEngine(engine_dir) as engine:
        assert engine.options.rule == "components" and engine.describe()["rule"] == "components"
        assert not engine.cue_on_demand
    with HostEngine(engine_dir, InferOptions(rule="paper")) as engine:
        assert engine.options.rule == "paper"
