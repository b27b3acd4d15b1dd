import numpy as np
import pytest

torch = pytest.importorskip("torch")

import dataclasses  # noqa: E402

from l2s_training.loop import LoopConfig, checkpoint_path, poly_lr, resolve_amp, train  # noqa: E402


def make_model():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.ReLU(), torch.nn.Conv2d(4, 1, 1))


class Interrupted(Exception):
    pass


def make_step(model, crash_at=None):
    calls = []

    def step(rng, gen):
        calls.append(1)
        if crash_at is not None and len(calls) == crash_at:
            raise Interrupted  # the process dies in the middle of epoch 3
        x = torch.from_numpy(rng.normal(size=(2, 1, 6, 6)).astype(np.float32))
        noise = torch.randn(2, 1, 4, 4, generator=gen)
        return ((model(x) - noise) ** 2).mean()
    return step


def cfg(tmp_path, epochs):
    return LoopConfig("toy", epochs, 3, 0.05, 0.9, 1e-4, tmp_path)


def test_poly_lr():
    assert poly_lr(1e-3, 0, 10) == 1e-3
    assert poly_lr(1e-3, 5, 10) == pytest.approx(1e-3 * 0.5**0.9)


def test_resume_continues_exactly_where_the_run_stopped(tmp_path):
    straight = make_model()
    train(straight, make_step(straight), cfg(tmp_path / "a", 4))

    crashed = make_model()
    with pytest.raises(Interrupted):
        train(crashed, make_step(crashed, crash_at=8), cfg(tmp_path / "b", 4))
    saved = torch.load(checkpoint_path(cfg(tmp_path / "b", 4)), weights_only=True)
    assert saved["epoch"] == 1  # epochs 1 and 2 (0-based 0, 1) were saved
    fresh = make_model()  # a new process: weights from the checkpoint, not from memory
    losses = train(fresh, make_step(fresh), cfg(tmp_path / "b", 4), resume=True)
    assert len(losses) == 2
    for a, b in zip(straight.state_dict().values(), fresh.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    sa = torch.load(checkpoint_path(cfg(tmp_path / "a", 4)), weights_only=True)["optimizer"]
    sb = torch.load(checkpoint_path(cfg(tmp_path / "b", 4)), weights_only=True)["optimizer"]
    for key in sa["state"]:
        torch.testing.assert_close(sa["state"][key]["momentum_buffer"], sb["state"][key]["momentum_buffer"], rtol=0, atol=0)
    rows = (tmp_path / "b" / "toy_log.csv").read_text().splitlines()
    assert [r.split(",")[0] for r in rows] == ["epoch", "1", "2", "3", "4"]


def test_resume_without_checkpoint_is_an_error(tmp_path):
    model = make_model()
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        train(model, make_step(model), cfg(tmp_path, 2), resume=True)


@pytest.mark.parametrize("choice, device, native, expected", [
    ("auto", "cuda", None, "fp16"), ("auto", "cpu", True, "bf16"), ("auto", "cpu", False, "off"),
    ("off", "cpu", True, "off"), ("bf16", "cpu", True, "bf16"), ("off", "cuda:1", None, "off")])
def test_resolve_amp(choice, device, native, expected):
    assert resolve_amp(choice, device, native) == expected


@pytest.mark.parametrize("choice, native, message", [
    ("fp16", True, "needs --device cuda"), ("bf16", False, "no native bfloat16"), ("fp8", True, "use one of")])
def test_resolve_amp_refuses(choice, native, message):
    with pytest.raises(ValueError, match=message):
        resolve_amp(choice, "cpu", native)


@pytest.mark.parametrize("amp, dtype", [("off", torch.float32), ("bf16", torch.bfloat16)])
def test_cpu_steps_run_in_the_chosen_precision(tmp_path, amp, dtype):
    model = make_model()
    seen = []
    model[0].register_forward_hook(lambda module, args, out: seen.append(out.dtype))
    before = [p.detach().clone() for p in model.parameters()]
    train(model, make_step(model), dataclasses.replace(cfg(tmp_path, 1), amp=amp))
    assert seen == [dtype] * 3
    assert all(p.dtype == torch.float32 for p in model.parameters())  # master weights stay fp32
    assert all(not torch.equal(a, b) for a, b in zip(before, model.parameters()))
