import json

import pytest

pytest.importorskip("torch")

from l2s_engine.phantoms import make_phantom  # noqa: E402
from l2s_engine.phantoms.files import write_study  # noqa: E402
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
    assert config["provenance"]["loc2d"]["fold"] == 0 and config["provenance"]["seg3d"]["train_cases"] == 8
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
