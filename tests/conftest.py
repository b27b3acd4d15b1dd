"""Shared helpers: small hand-built images written with SimpleITK directly."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

LPS_FLIPPED = (-1.0, 0.0, 0.0, 0.0, -1.0, 0.0, 0.0, 0.0, 1.0)


def write_volume(path: Path, array: np.ndarray, spacing=(2.0, 2.0, 3.0), origin=(0.0, 0.0, 0.0),
                 direction=(1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)) -> Path:
    """Write ``array`` (z, y, x) with SimpleITK itself, header as given (x, y, z order)."""
    import SimpleITK as sitk

    image = sitk.GetImageFromArray(array)
    image.SetSpacing(spacing)
    image.SetOrigin(origin)
    image.SetDirection(direction)
    path.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(image, str(path))
    return path


def make_autopet_study(folder: Path, shape=(6, 5, 4), seed: int = 0, seg: bool = True, **header) -> Path:
    """A small autoPET-layout study with random PET, int16 CT and a SEG."""
    rng = np.random.default_rng(seed)
    write_volume(folder / "SUV.nii.gz", rng.uniform(0, 10, shape).astype(np.float32), **header)
    write_volume(folder / "CTres.nii.gz", rng.integers(-1000, 1000, shape).astype(np.int16), **header)
    if seg:
        write_volume(folder / "SEG.nii.gz", (rng.uniform(size=shape) > 0.8).astype(np.uint8), **header)
    return folder


@pytest.fixture
def autopet_study(tmp_path: Path) -> Path:
    return make_autopet_study(tmp_path / "PETCT_0011" / "01-01-2010-NA-PET-CT study-1")


DEMO_WEIGHTS = Path(__file__).resolve().parents[1] / "weights" / "demo"


@pytest.fixture(scope="session", autouse=True)
def _private_model_cache(tmp_path_factory):
    """OpenVINO's compiled-model cache in a folder of this test session, not the user's."""
    import os

    previous = os.environ.get("L2S_CACHE_DIR")
    os.environ["L2S_CACHE_DIR"] = str(tmp_path_factory.mktemp("l2s-cache"))
    yield
    if previous is None:
        os.environ.pop("L2S_CACHE_DIR", None)
    else:
        os.environ["L2S_CACHE_DIR"] = previous


@pytest.fixture(scope="session")
def demo_engine(tmp_path_factory) -> Path:
    """The committed demo weights exported once per test session (ONNX only)."""
    pytest.importorskip("torch")
    pytest.importorskip("onnxconverter_common")
    from l2s_export.cli import main

    out = tmp_path_factory.mktemp("demo-engine")
    assert main([str(DEMO_WEIGHTS), "-o", str(out), "--no-tensorrt"]) == 0
    return out
