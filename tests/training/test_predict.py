import numpy as np
import pytest

torch = pytest.importorskip("torch")

from l2s_engine.geometry import Geometry  # noqa: E402
from l2s_engine.spec import Loc2DSpec, Seg3DSpec  # noqa: E402
from l2s_training.predict import predict_cue, predict_volume  # noqa: E402


class FirstChannel(torch.nn.Module):
    """Returns its first input channel as the logit: the blended output must reproduce it."""

    def forward(self, x):
        return x[:, :1]


def sigmoid(x):
    return 1 / (1 + np.exp(-x.astype(np.float64)))


def test_sliding_windows_reproduce_a_voxelwise_model():
    rng = np.random.default_rng(0)
    pet = rng.uniform(-1, 1, (20, 13, 37)).astype(np.float32)   # smaller than the patch in y: padded
    ct = rng.uniform(-1, 1, pet.shape).astype(np.float32)
    spec = Seg3DSpec(patch=(8, 16, 16))
    probs = predict_volume(FirstChannel(), pet, ct, spec, step_fraction=0.5, batch=3)
    assert probs.shape == pet.shape
    np.testing.assert_allclose(probs, sigmoid(pet), atol=2e-6)


def test_cue_of_a_slicewise_model_without_resize_is_its_input_inside_the_crop():
    rng = np.random.default_rng(1)
    g = Geometry((12, 5, 16), (2.0, 2.0, 3.0), (0.0, 0.0, 0.0), (-1.0, 0, 0, 0, -1.0, 0, 0, 0, 1.0))
    pet = rng.uniform(-1, 1, g.shape).astype(np.float32)       # (z, y, x) = (16, 5, 12)
    spec = Loc2DSpec(resize=(16, 12), crop=(2, 14, 0, 12))      # rows = z, cols = x
    cue = predict_cue(FirstChannel(), pet, g, spec, batch=2)
    assert cue.shape == pet.shape
    np.testing.assert_allclose(cue[2:14], sigmoid(pet[2:14]), atol=2e-6)
    assert cue[:2].max() == 0 and cue[14:].max() == 0              # outside the crop: no cue
