"""The runtime must import, load studies and run its CLIs with torch unimportable."""

import subprocess
import sys
import textwrap

BLOCK_TORCH = textwrap.dedent("""
    import sys

    class NoTorch:
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in ("torch", "torchvision", "timm"):
                raise ImportError(f"{name} is blocked for this test")

    sys.meta_path.insert(0, NoTorch())
""")


def test_runtime_works_without_torch(tmp_path):
    script = BLOCK_TORCH + textwrap.dedent(f"""
        import l2s_engine, l2s_engine.io, l2s_engine.metrics, l2s_engine.phantoms, l2s_engine.qc
        from l2s_engine.cli import phantoms_main
        from l2s_engine.io import find_studies, iter_studies
        assert phantoms_main([{str(tmp_path)!r}, "-n", "2", "--size", "tiny"]) == 0
        results = list(iter_studies(find_studies([{str(tmp_path)!r}])))
        assert len(results) == 2 and all(r.study is not None for r in results)
        leaked = [m for m in sys.modules if m.split(".")[0] in ("torch", "torchvision", "timm")]
        assert not leaked, leaked
        print("torch-free ok")
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "torch-free ok" in done.stdout


def test_cpu_pipeline_runs_without_torch(tmp_path, demo_engine):
    from l2s_engine.phantoms import make_phantom
    from l2s_engine.phantoms.files import write_study

    write_study(make_phantom(0, seed=5, size="tiny"), tmp_path / "in")
    script = BLOCK_TORCH + textwrap.dedent(f"""
        from l2s_engine.cli import infer_main
        code = infer_main(["--engine", {str(demo_engine)!r}, {str(tmp_path / "in")!r}, "-o", {str(tmp_path / "out")!r}, "-q"])
        leaked = [m for m in sys.modules if m.split(".")[0] in ("torch", "torchvision", "timm")]
        assert code == 0 and not leaked, (code, leaked)
        print("torch-free pipeline ok")
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "torch-free pipeline ok" in done.stdout
    assert len(list((tmp_path / "out").glob("*.nii.gz"))) == 1
