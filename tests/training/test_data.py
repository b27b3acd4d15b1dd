import numpy as np
import pytest

pytest.importorskip("torch")

from l2s_engine.io import find_studies  # noqa: E402
from l2s_engine.phantoms import make_phantom  # noqa: E402
from l2s_engine.phantoms.files import write_study  # noqa: E402
from l2s_engine.spec import preset  # noqa: E402
from l2s_training.data.patches import PatchSampler  # noqa: E402
from l2s_training.data.slices import SliceSampler  # noqa: E402
from l2s_training.data.studies import TrainingDataError, load_training_studies  # noqa: E402


@pytest.fixture(scope="module")
def tiny_studies(tmp_path_factory):
    root = tmp_path_factory.mktemp("train")
    for i in range(6):
        write_study(make_phantom(i, seed=5, size="tiny"), root)
    return root, load_training_studies([root], preset("lite"))


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
