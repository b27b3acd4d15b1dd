import json

import pytest

pytest.importorskip("torch")

from l2s_engine.phantoms import make_phantom  # noqa: E402
from l2s_engine.phantoms.files import write_study  # noqa: E402
from l2s_engine.phantoms.study import SIZES  # noqa: E402
from l2s_engine.spec import Spec, preset  # noqa: E402
from l2s_training.cli import main  # noqa: E402


def test_end_to_end_smoke_on_tiny_phantoms(tmp_path, capsys):
    data = tmp_path / "data"
    for i in range(10):
        write_study(make_phantom(i, seed=2, size="tiny"), data)
    out = tmp_path / "w"
    assert main(["all", "--data", str(data), "--out", str(out), "--epochs", "1", "--iters", "1"]) == 0
    assert {p.name for p in out.iterdir()} >= {"loc2d.safetensors", "seg3d.safetensors", "config.json",
                                                "loc2d_log.csv", "seg3d_log.csv", "checkpoints"}
    config = json.loads((out / "config.json").read_text())
    spec = Spec.from_dict(config["spec"])
    assert spec.loc2d == preset("lite").loc2d and spec.train.epochs_2d == 1
    # the network spacing is the training studies' median (all tiny: 15.3 x 12 x 12 mm, read back
    # from float32 headers and rounded), not the preset's 6.1 x 4.2 x 4.2
    assert spec.spacing_zyx_mm == SIZES["tiny"].spacing != preset("lite").spacing_zyx_mm
    assert config["provenance"]["spacing"] == "median PET spacing of 8 training studies"
    assert config["provenance"]["loc2d"]["fold"] == 0 and config["provenance"]["seg3d"]["train_cases"] == 8
    for net in ("loc2d", "seg3d"):  # the BCE lesion weight each net trained with, and the share it came from
        share, weight = config["provenance"][net]["lesion_share"], config["provenance"][net]["bce_lesion_weight"]
        assert 0 < share < 0.5 and weight == pytest.approx(max(1.0, ((1 - share) / share) ** 0.5), rel=2e-3)
    assert main(["eval", "--data", str(data), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "3d (p > 0.5): Dice" in printed and "fused (paper rule): Dice" in printed
    assert (out / "eval_fold0.json").exists()
    # a paper-preset run into the same folder is refused: its 2D net would not match
    assert main(["3d", "--data", str(data), "--out", str(out), "--preset", "paper"]) == 2
    assert "holds a 'lite' model" in capsys.readouterr().err


def test_clear_errors(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert main(["2d", "--data", str(tmp_path / "empty"), "--out", str(tmp_path / "w")]) == 2
    assert "no study found" in capsys.readouterr().err
    negatives = tmp_path / "neg"
    for i in (1, 3):
        write_study(make_phantom(i, seed=0, size="tiny"), negatives)
    assert main(["2d", "--data", str(negatives), "--out", str(tmp_path / "w"), "--fold", "-1"]) == 2
    assert "has a lesion" in capsys.readouterr().err
    assert main(["3d", "--data", str(negatives), "--out", str(tmp_path / "w2"), "--fold", "-1"]) == 2
    assert main(["2d", "--data", str(negatives), "--out", str(tmp_path / "w"), "--preset", "huge"]) == 2
    assert "unknown preset" in capsys.readouterr().err


def test_spacing_flag_and_a_3d_run_keeps_the_2d_nets_spacing(tmp_path, capsys):
    data = tmp_path / "data"
    for i in range(4):
        write_study(make_phantom(i, seed=2, size="tiny"), data)
    out = tmp_path / "w"
    args = ["--data", str(data), "--out", str(out), "--epochs", "1", "--iters", "1", "--fold", "-1"]
    assert main(["2d", *args, "--spacing", "20,16,16"]) == 0  # coarser than the studies: resampled
    config = json.loads((out / "config.json").read_text())
    assert tuple(config["spec"]["spacing_zyx_mm"]) == (20.0, 16.0, 16.0)
    assert config["provenance"]["spacing"] == "--spacing"
    assert main(["3d", *args, "--spacing", "10,8,8"]) == 2
    assert "trained at spacing (20.0, 16.0, 16.0)" in capsys.readouterr().err
    assert main(["3d", *args]) == 0  # the 2d net's spacing, whatever the studies' median
    config = json.loads((out / "config.json").read_text())
    assert tuple(config["spec"]["spacing_zyx_mm"]) == (20.0, 16.0, 16.0)
    with pytest.raises(SystemExit):
        main(["2d", *args, "--spacing", "1,2"])
