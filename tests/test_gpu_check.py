"""`make gpu-check`'s CPU-side parts: the wheel folder preparation (Ray's wheel without its
Java jar, the packages left out, the size limit) on fake wheels, argument handling, and the
clear exit-2 error where there is no CUDA."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from benchmarks import gpu_check, prepare_wheels

ROOT = Path(__file__).resolve().parents[1]


def _fake_ray_wheel(folder: Path, jar_mb: int = 3) -> Path:
    wheel = folder / "ray-2.60.0-cp312-cp312-manylinux2014_x86_64.whl"
    files = {
        "ray/__init__.py": b"__version__ = '2.60.0'\n",
        prepare_wheels.RAY_JAR: os.urandom(jar_mb * 2**20),  # incompressible, like a jar
        "ray-2.60.0.dist-info/METADATA": b"Metadata-Version: 2.1\nName: ray\nVersion: 2.60.0\n",
        "ray-2.60.0.dist-info/WHEEL": b"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: false\nTag: cp312-cp312-manylinux2014_x86_64\n",
    }
    record = "".join(f"{name},{prepare_wheels.record_hash(data)},{len(data)}\n" for name, data in files.items())
    record += "ray-2.60.0.dist-info/RECORD,,\n"
    with zipfile.ZipFile(wheel, "w", compression=zipfile.ZIP_DEFLATED) as z:
        for name, data in files.items():
            z.writestr(name, data)
        z.writestr("ray-2.60.0.dist-info/RECORD", record)
    return wheel


def test_ray_wheel_loses_its_jar_and_stays_consistent(tmp_path):
    wheel = _fake_ray_wheel(tmp_path)
    before = wheel.stat().st_size
    assert prepare_wheels.finish(tmp_path, limit_mb=64) == 0
    assert wheel.stat().st_size < before - 2 * 2**20
    with zipfile.ZipFile(wheel) as z:
        names = z.namelist()
        assert prepare_wheels.RAY_JAR not in names and "ray/__init__.py" in names
        record = z.read("ray-2.60.0.dist-info/RECORD").decode().splitlines()
        assert not any(line.startswith(prepare_wheels.RAY_JAR) for line in record)
        for line in record:  # every file left matches its RECORD hash
            name, digest, _ = line.split(",")
            if digest:
                assert prepare_wheels.record_hash(z.read(name)) == digest, name
    # pip can still read it as a wheel
    done = subprocess.run([sys.executable, "-m", "pip", "install", "--dry-run", "--no-deps", "--no-index",
                           "--ignore-installed", "--only-binary=:all:", "--python-version=3.12", "--platform=manylinux2014_x86_64",
                           f"--target={tmp_path}/t", str(wheel)], capture_output=True, text=True)
    assert done.returncode == 0 and "ray-2.60.0" in done.stdout, done.stderr


def test_folder_over_the_limit_fails_naming_the_largest_wheels(tmp_path, capsys):
    _fake_ray_wheel(tmp_path, jar_mb=1)
    (tmp_path / "big-1.0-py3-none-any.whl").write_bytes(os.urandom(3 * 2**20))
    assert prepare_wheels.finish(tmp_path, limit_mb=2) == 1
    err = capsys.readouterr().err
    assert "over the 2 MB limit" in err and err.index("big-1.0") < err.index("ray-2.60.0") and "--have" in err


def test_torch_and_what_the_gpu_machine_has_are_left_out():
    resolved = [{"metadata": {"name": n, "version": "1"}} for n in
                ("torch", "torchvision", "nvidia-cudnn-cu12", "triton", "ray", "Pandas", "pyyaml", "hidden-core")]
    have = prepare_wheels.installed_names("pandas==2.2.0\nnumpy @ file:///x\n# comment\n-e git+https://x#egg=y\nPyYAML>=6\n")
    assert have == {"pandas", "numpy", "pyyaml"}
    assert [i["metadata"]["name"] for i in prepare_wheels.wanted(resolved, have)] == ["ray"]


def test_prepare_rejects_bad_arguments(tmp_path, capsys):
    assert prepare_wheels.main([str(tmp_path / "w"), "--have", str(tmp_path / "missing.txt")]) == 2
    assert "--have:" in capsys.readouterr().err
    assert prepare_wheels.main([str(tmp_path / "w"), "--python", "twelve"]) == 2
    assert "--python:" in capsys.readouterr().err


def _gpu_check(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu_check.py"), *args], capture_output=True, text=True,
                          cwd=ROOT, timeout=120, env={**os.environ, "CUDA_VISIBLE_DEVICES": ""})


def test_gpu_check_arguments(tmp_path):
    missing = _gpu_check()
    assert missing.returncode == 2 and "error: WHEELS: give the wheel folder" in missing.stderr
    nofolder = _gpu_check(str(tmp_path / "nope"))
    assert nofolder.returncode == 2 and "is not a folder" in nofolder.stderr and "prepare_wheels.py" in nofolder.stderr
    (tmp_path / "empty").mkdir()
    empty = _gpu_check(str(tmp_path / "empty"))
    assert empty.returncode == 2 and "holds no .whl files" in empty.stderr
    peak = _gpu_check("--skip-install", "--peak-tflops", "-3")
    assert peak.returncode == 2 and "--peak-tflops: -3.0 must be > 0" in peak.stderr


def test_gpu_check_without_cuda_is_a_clear_error_before_installing(tmp_path):
    _fake_ray_wheel(tmp_path)
    done = _gpu_check(str(tmp_path))
    assert done.returncode == 2, done.stderr
    assert "error: CUDA is not available to PyTorch" in done.stderr and "nvidia-smi" in done.stderr
    assert "Processing" not in done.stdout + done.stderr  # pip never ran


def test_the_table_names_every_failure():
    rows = [{"method": "dense", "model": "convnet4", "images_s": 51234.4, "peak_fraction": 0.123, "val_acc": 0.41, "status": "completed"},
            {"method": "edge_popup", "model": "resnet20", "images_s": float("nan"), "peak_fraction": float("nan"),
             "val_acc": float("nan"), "status": "error"}]
    sweep = {"efficiency": 0.81, "concurrency": 4, "at_once": 4, "wall_s": 95.0, "counts": {"completed": 16}}
    text = gpu_check.table("NVIDIA H100 80GB HBM3", 989.0, rows, sweep, ["edge_popup resnet20: RuntimeError: boom"], 300.0)
    lines = text.splitlines()
    assert lines[0] == "gpu-check on NVIDIA H100 80GB HBM3 (bf16 peak 989 TFLOP/s)"
    assert "51234" in lines[2] and "12.3%" in lines[2] and "error" in lines[3]
    assert "efficiency 0.81, trials on the GPU at once 4" in text
    assert lines[-1] == "  FAILED edge_popup resnet20: RuntimeError: boom"


def test_make_gpu_check_passes_the_folder():
    done = subprocess.run(["make", "-n", "gpu-check", "WHEELS=/data/wheels"], capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0 and "benchmarks/gpu_check.py /data/wheels" in done.stdout
    assert pytest.importorskip("torch")  # the script runs with the Python that has PyTorch
