import dataclasses

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("timm")

from l2s_engine.spec import preset  # noqa: E402
from l2s_training.models import Loc2DNet, Seg3DNet, load_imagenet_encoder  # noqa: E402


def n_params(model):
    return sum(p.numel() for p in model.parameters())


def seg3d_params_by_hand(f: int, levels: int, cin: int = 2) -> int:
    """Parameters of the 3D U-Net counted from its definition (conv without bias + affine norm)."""
    def block(a, b):
        return 27 * a * b + 2 * b + 27 * b * b + 2 * b

    widths = [f * 2**i for i in range(levels)]
    total, prev = 0, cin
    for w in widths:
        total += block(prev, w)
        prev = w
    for w in reversed(widths[:-1]):
        total += 8 * (2 * w) * w + w      # transposed conv 2x2x2 with bias
        total += block(2 * w, w)
    return total + widths[0] + 1          # 1x1x1 head with bias


def test_paper_3d_net_shape_and_parameters():
    spec = preset("paper").seg3d
    model = Seg3DNet(spec).eval()
    assert n_params(model) == seg3d_params_by_hand(16, 4) == 1_401_697
    with torch.no_grad():
        assert model(torch.zeros(1, 2, 16, 24, 16)).shape == (1, 1, 16, 24, 16)


def test_paper_2d_net_shape_and_parameters():
    spec = preset("paper").loc2d
    model = Loc2DNet(spec).eval()
    assert 36.0e6 < n_params(model) < 38.0e6  # res2net50_26w_4s encoder + 320/256/128/64/32 decoder
    assert [b.convs[0][0].out_channels for b in model.decoder.blocks] == [320, 256, 128, 64, 32]
    with torch.no_grad():
        assert model(torch.zeros(1, 1, *spec.slice_shape)).shape == (1, 1, 320, 384)


@pytest.mark.parametrize("norm, kind", [("instance", torch.nn.InstanceNorm3d), ("layer", torch.nn.GroupNorm),
                                         ("batch", torch.nn.BatchNorm3d)])
def test_3d_normalisations(norm, kind):
    spec = dataclasses.replace(preset("lite").seg3d, norm=norm)
    model = Seg3DNet(spec)
    norms = [m for m in model.modules() if isinstance(m, kind)]
    assert norms and all(getattr(m, "num_groups", 1) == 1 for m in norms)


def test_lite_2d_with_five_slices_and_nearest_upsampling():
    spec = dataclasses.replace(preset("lite").loc2d, in_slices=5, upsample="nearest")
    model = Loc2DNet(spec).eval()
    with torch.no_grad():
        assert model(torch.zeros(2, 5, *spec.slice_shape)).shape == (2, 1, *spec.slice_shape)
    assert all(b.mode == "nearest" for b in model.decoder.blocks)


@pytest.mark.parametrize("in_slices", [1, 5])
def test_imagenet_weights_from_a_local_file(tmp_path, in_slices):
    import timm
    from safetensors.torch import save_file

    reference = timm.create_model("res2net50_26w_4s", pretrained=False)
    state = {k: v.contiguous() for k, v in reference.state_dict().items()}
    save_file(state, str(tmp_path / "res2net.safetensors"))
    model = Loc2DNet(dataclasses.replace(preset("paper").loc2d, in_slices=in_slices))
    missing = load_imagenet_encoder(model, str(tmp_path / "res2net.safetensors"))
    assert missing == []
    rgb = state["conv1.weight"].double()
    expected = rgb.sum(1, keepdim=True) if in_slices == 1 else rgb.repeat(1, 2, 1, 1)[:, :5] * 3 / 5
    torch.testing.assert_close(model.encoder.conv1.weight.double(), expected, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(model.encoder.layer3[0].conv1.weight, state["layer3.0.conv1.weight"])
