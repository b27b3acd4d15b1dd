"""The scheduler with the GPU pipeline (on the CPU stand-in device): the reader thread uploads
each study once, ahead of its turn, and the masks equal the host pipeline's."""

import pytest

pytest.importorskip("SimpleITK")

from runtime.engines import fast_engine  # noqa: E402

from l2s_engine.cuda.engine import DeviceEngine  # noqa: E402
from l2s_engine.io import find_studies  # noqa: E402
from l2s_engine.phantoms import make_phantom  # noqa: E402
from l2s_engine.phantoms.files import write_study  # noqa: E402
from l2s_engine.pipeline import HostEngine  # noqa: E402
from l2s_engine.scheduler import OutputOptions, run_studies  # noqa: E402

from .host_device import HostDevice  # noqa: E402


@pytest.mark.parametrize("spacing", ["tiny", (10.0, 9.0, 7.0)])  # the studies', or resampled on the device
def test_reader_uploads_each_study_once_and_masks_match(tmp_path, host_kernels, spacing):
    engine_dir = fast_engine(tmp_path / "engine", spacing=spacing)
    for i in range(3):
        write_study(make_phantom(i, seed=1000, size="tiny"), tmp_path / "in", "autopet")
    refs = find_studies([tmp_path / "in"])
    device = HostDevice(host_kernels)
    with DeviceEngine(engine_dir, device=device) as gpu, HostEngine(engine_dir) as host:
        got = run_studies(gpu, refs, OutputOptions(tmp_path / "gpu"), progress=False)
        ref = run_studies(host, refs, OutputOptions(tmp_path / "host"), progress=False)
    assert device.uploads == 2 * len(refs)  # PET and CT, once per study, by the reader
    assert [r.status for r in got] == ["ok"] * 3
    assert [r.mask_voxels for r in got] == [r.mask_voxels for r in ref]
    assert sum(r.mask_voxels for r in ref) > 0
    assert all("upload" in r.timings and "device" in r.timings for r in got)
    assert [r.spacing["network_shape"] for r in got] == [r.spacing["network_shape"] for r in ref]
    assert all(r.spacing["resampled"] == (spacing != "tiny") for r in got)
