import dataclasses

import numpy as np
import pytest

pytest.importorskip("torch")

from l2s_engine.geometry import Geometry  # noqa: E402
from l2s_engine.io import find_studies  # noqa: E402
from l2s_engine.phantoms import make_phantom  # noqa: E402
from l2s_engine.phantoms.files import write_study  # noqa: E402
from l2s_engine.phantoms.study import SIZES  # noqa: E402
from l2s_engine.spec import Loc2DSpec, preset  # noqa: E402
from l2s_training.data.patches import PatchSampler  # noqa: E402
from l2s_training.data.slices import SliceSampler  # noqa: E402
from l2s_training.data.studies import (TrainingDataError, TrainStudy, lesion_components,  # noqa: E402
                                       load_training_studies, median_spacing)

TINY = dataclasses.replace(preset("lite"), spacing_zyx_mm=SIZES["tiny"].spacing)  # networks at the studies' spacing


@pytest.fixture(scope="module")
def tiny_studies(tmp_path_factory):
    root = tmp_path_factory.mktemp("train")
    for i in range(6):
        write_study(make_phantom(i, seed=5, size="tiny"), root)
    return root, load_training_studies([root], TINY)


def test_lesion_share_over_1000_batches(tiny_studies):
    _, studies = tiny_studies
    sampler = SliceSampler(studies, preset("lite").loc2d, batch=16, lesion_fraction=0.2)
    rng = np.random.default_rng(0)
    draws = [sampler.draw(rng) for _ in range(1000)]
    share = np.mean([flag for batch in draws for (_, _, flag) in batch])
    assert abs(share - 0.2) <= 0.03
    assert all(len(b) == 16 for b in draws)
    # the flags are true: the labels of flagged slices (in network space) hold lesion voxels
    for batch in draws[:40]:
        _, y = sampler.batch_arrays(batch)
        has_lesion = y.reshape(len(batch), -1).any(axis=1)
        np.testing.assert_array_equal(has_lesion, [flag for (_, _, flag) in batch])


def test_lesion_pixel_share_matches_drawn_batches(tiny_studies):
    _, studies = tiny_studies
    sampler = SliceSampler(studies, preset("lite").loc2d, batch=16, lesion_fraction=0.2)
    rng = np.random.default_rng(1)
    drawn = np.mean([sampler.batch_arrays(sampler.draw(rng))[1].mean() for _ in range(1500)])
    assert 0.0 < sampler.lesion_pixel_share() < 0.2
    assert sampler.lesion_pixel_share() == pytest.approx(drawn, rel=0.1)


def test_patches_pad_small_volumes_and_oversample_lesions(tiny_studies, caplog):
    _, studies = tiny_studies
    for s in studies:
        s.cue = np.zeros(s.seg.shape, np.float32)
    patch = (64, 64, 64)                     # tiny volumes are 64 x 40 x 48: padded in y and x
    with caplog.at_level("WARNING"):
        sampler = PatchSampler(studies, patch, fg_fraction=1.0)
    assert "padding" in caplog.text
    x, y, cue = sampler.draw(np.random.default_rng(0), 8)
    assert x.shape == (8, 2, *patch) and y.shape == cue.shape == (8, 1, *patch)
    assert (y.reshape(8, -1).sum(axis=1) > 0).all()  # every patch centred on a lesion holds it
    assert x.min() >= -1.0 and x.max() <= 1.0


def test_patch_lesion_share_is_the_labelled_share_of_a_volume_the_patch_covers(tiny_studies):
    _, studies = tiny_studies
    study = next(s for s in studies if s.positive)
    study.cue = np.zeros(study.seg.shape, np.float32)
    sampler = PatchSampler([study], (64, 64, 64), fg_fraction=0.5)  # every patch is the whole (padded) volume
    assert sampler.lesion_voxel_share(batch=2, batches=5) == pytest.approx(int(study.seg.sum()) / 64**3, rel=1e-6)


def test_no_labels_and_no_lesions_are_errors(tmp_path):
    for i in (1, 3):                          # seed 0: odd indices are lesion-free
        write_study(make_phantom(i, seed=0, size="tiny"), tmp_path)
    with pytest.raises(TrainingDataError, match="none of the 2"):
        load_training_studies([tmp_path], preset("lite"))
    for seg in tmp_path.rglob("SEG.nii.gz"):
        seg.unlink()
    with pytest.raises(TrainingDataError, match="no study with a label"):
        load_training_studies([tmp_path], preset("lite"))
    assert len(find_studies([tmp_path])) == 2


def test_median_spacing_reads_the_headers(tmp_path):
    from conftest import make_autopet_study

    # ITK order (x, y, z) in the headers; the median per axis, in numpy order (z, y, x)
    for i, spacing in enumerate([(2.0, 2.0, 3.0), (4.0, 4.0, 5.0), (2.0364, 2.5, 3.0), (9.0, 1.0, 7.0)]):
        make_autopet_study(tmp_path / f"PETCT_{i}" / "study", spacing=spacing)
    refs = find_studies([tmp_path])
    assert median_spacing(refs) == (4.0, 2.25, 3.0182)


def test_median_spacing_leaves_out_a_header_the_runtime_refuses(tmp_path):
    import gzip
    import struct

    from conftest import make_autopet_study

    for i in range(2):
        make_autopet_study(tmp_path / f"PETCT_{i}" / "study", spacing=(2.0, 2.0, 3.0))
    bad = tmp_path / "PETCT_1" / "study" / "SUV.nii.gz"
    raw = bytearray(gzip.decompress(bad.read_bytes()))
    raw[80:92] = struct.pack("<3f", 0.0, 0.0, 0.0)  # pixdim[1..3]: ITK would read 1.0 mm
    bad.write_bytes(gzip.compress(bytes(raw)))
    # counted at ITK's 1.0 mm the median would be (2.0, 1.5, 1.5); the study is left out
    assert median_spacing(find_studies([tmp_path])) == (3.0, 2.0, 2.0)


def test_studies_are_resampled_to_the_network_spacing(tiny_studies):
    root, native = tiny_studies
    # z and y refined exactly x2, x (12 mm) already the network's
    spec = dataclasses.replace(preset("lite"), spacing_zyx_mm=(7.65, 6.0, 12.0))
    studies = load_training_studies([root], spec, keep_native=True)
    by_id = {s.case_id: s for s in native}
    assert len(studies) == len(native)
    for s in studies:
        ref = by_id[s.case_id]
        assert s.grid.resampled and s.grid.axes == (True, True, False) and s.geometry == s.grid.network
        assert s.pet_2d.shape == s.pet_3d.shape == s.ct_3d.shape == s.seg.shape == (128, 80, 48)
        np.testing.assert_array_equal(s.native_seg, ref.seg)
        # even network voxels sit on native voxel centres (up to the float32 header: 15.3 is
        # 15.300000191), where Keys cubic (PET), linear (CT) and linear-then-0.5 (label) return
        # the native samples themselves
        np.testing.assert_allclose(s.pet_3d[::2, ::2], ref.pet_3d, rtol=0, atol=2e-6)
        np.testing.assert_allclose(s.ct_3d[::2, ::2], ref.ct_3d, rtol=0, atol=1e-5)  # HU ulps, windowed
        np.testing.assert_array_equal(s.seg[::2, ::2], ref.seg)
        assert s.positive == ref.positive
        # between them, interpolated values: not a copy of a neighbour
        assert not np.array_equal(s.pet_3d[1::2][:63], s.pet_3d[0::2][:63])


def _two_lesion_study() -> TrainStudy:
    """A hand-built study (identity direction: numpy y is the coronal axis) with two lesions:
    a 10 x 10 x 10 cube crossing coronal slices 5-14 and a single voxel on slice 25."""
    shape = (40, 32, 48)
    seg = np.zeros(shape, np.uint8)
    seg[5:15, 5:15, 5:15] = 1
    seg[30, 25, 40] = 1
    flat = np.zeros(shape, np.float32)
    geometry = Geometry(size=(48, 32, 40), spacing=(4.0, 4.0, 4.0), origin=(0.0, 0.0, 0.0))
    study = TrainStudy("hand", geometry, flat, flat, flat, seg, lesions=lesion_components(seg))
    study.cue = flat
    return study


def test_lesion_components_are_the_18_connected_components():
    from scipy import ndimage

    seg = np.zeros((12, 12, 12), np.uint8)
    seg[1:4, 1:4, 1:4] = 1          # a cube
    seg[6, 6, 6] = seg[7, 7, 6] = 1  # sharing an edge: one lesion at connectivity 18
    seg[9, 9, 9] = seg[10, 10, 10] = 1  # sharing only a corner: two lesions
    labels, count = ndimage.label(seg, structure=ndimage.generate_binary_structure(3, 2))
    expected = sorted(sorted(map(tuple, np.argwhere(labels == k))) for k in range(1, count + 1))
    got = sorted(sorted(map(tuple, voxels)) for voxels in lesion_components(seg))
    assert count == 4 and got == expected
    assert lesion_components(np.zeros((3, 3, 3), np.uint8)) == []


def test_lesion_patches_are_drawn_per_lesion_not_per_voxel():
    # drawn per voxel the single voxel would centre 1 patch in 1,001; per lesion, half of them
    sampler = PatchSampler([_two_lesion_study()], (16, 16, 16), fg_fraction=1.0)
    _, y, _ = sampler.draw(np.random.default_rng(0), 400)
    counts = y.reshape(400, -1).sum(axis=1)
    assert counts.min() >= 1                  # every patch holds a lesion
    assert 0.4 < np.mean(counts == 1) < 0.6   # the patches around the cube never reach the voxel


def test_lesion_slices_are_drawn_per_lesion_not_per_slice():
    spec = Loc2DSpec(resize=(40, 48), crop=(0, 40, 0, 48))  # network space = the coronal slice itself
    sampler = SliceSampler([_two_lesion_study()], spec, batch=16, lesion_fraction=0.25)
    rng = np.random.default_rng(0)
    slices = np.array([j for _ in range(500) for (_, j, flag) in sampler.draw(rng) if flag])
    assert set(np.unique(slices)) == set(range(5, 15)) | {25}
    # drawn per slice the voxel's slice would be 1 of 11 draws; per lesion, half
    assert 0.45 < np.mean(slices == 25) < 0.55
    # half the lesion slices show the cube's 10 x 10 pixels, half the single voxel
    assert sampler.lesion_pixel_share() == pytest.approx(0.25 * (0.5 * 100 + 0.5 * 1) / (40 * 48))
