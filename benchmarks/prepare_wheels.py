"""Prepare the wheel folder `make gpu-check` installs from, on a machine with network.

    python benchmarks/prepare_wheels.py wheels/                     # everything but torch/torchvision
    python benchmarks/prepare_wheels.py wheels/ --have gpu-freeze.txt   # skip what the GPU box has
    # gpu-freeze.txt: `python -m pip freeze` run on the GPU machine

Downloads CPython 3.12 manylinux x86_64 wheels of this project's dependencies (the whole
resolved set, minus torch, torchvision, triton and the nvidia-* CUDA wheels the GPU
machine's PyTorch already brings, minus whatever `--have` lists), then repacks Ray's wheel
without `ray/jars/ray_dist.jar` (Ray's Java API, about 34 MB that a Python-only sweep never
loads: 79 MB -> 45 MB). Prints the folder's size; exits 1 when it is over --limit-mb
(default 64), naming the largest wheels, so a transfer limit is known before the trip.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import re
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64", "linux_x86_64")
ALWAYS_SKIP = re.compile(r"^(torch|torchvision|torchaudio|triton|nvidia-.*)$")
RAY_JAR = "ray/jars/ray_dist.jar"


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def installed_names(freeze_text: str) -> set[str]:
    """Package names of a `pip freeze` (or `pip list --format=freeze`) output."""
    names = set()
    for line in freeze_text.splitlines():
        line = line.strip()
        if not line or line.startswith(("#", "-")):
            continue
        name = re.split(r"[=<>!~ @\[;]", line, maxsplit=1)[0]
        if name:
            names.add(canonical(name))
    return names


def wanted(resolved: list[dict], have: set[str]) -> list[dict]:
    """The resolved packages to download: not torch & co., not already on the GPU box."""
    out = []
    for item in resolved:
        name = canonical(item["metadata"]["name"])
        if ALWAYS_SKIP.match(name) or name in have or name == "hidden-core":
            continue
        out.append(item)
    return out


def strip_ray_jar(wheel: Path) -> Path:
    """Rewrite a Ray wheel without ray/jars/ray_dist.jar (and its RECORD line), in place.
    The wheel stays valid: every other file and its RECORD hash are kept."""
    with tempfile.NamedTemporaryFile(dir=wheel.parent, suffix=".whl", delete=False) as tmp:
        tmp_path = Path(tmp.name)
    with zipfile.ZipFile(wheel) as src, zipfile.ZipFile(tmp_path, "w", compression=zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            if info.filename == RAY_JAR:
                continue
            data = src.read(info)
            if info.filename.endswith(".dist-info/RECORD"):
                lines = [ln for ln in data.decode().splitlines() if not ln.startswith(RAY_JAR + ",")]
                data = ("\n".join(lines) + "\n").encode()
            dst.writestr(info, data)
    tmp_path.replace(wheel)
    return wheel


def record_hash(data: bytes) -> str:
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def folder_mb(folder: Path) -> float:
    return sum(f.stat().st_size for f in folder.glob("*.whl")) / 2**20


def resolve(python: str) -> list[dict]:
    """The whole dependency set of this project for CPython `python` on manylinux x86_64,
    resolved by pip without installing anything (`pip install --dry-run --report`)."""
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "report.json"
        cmd = [sys.executable, "-m", "pip", "install", "--dry-run", "--quiet", "--ignore-installed", "--only-binary=:all:",
               f"--python-version={python}", "--implementation=cp", f"--target={tmp}/t", f"--report={report}",
               *[f"--platform={p}" for p in PLATFORMS], str(ROOT)]
        subprocess.run(cmd, check=True)
        return json.loads(report.read_text())["install"]


def download(items: list[dict], folder: Path, python: str) -> None:
    specs = [f"{item['metadata']['name']}=={item['metadata']['version']}" for item in items]
    cmd = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:", f"--python-version={python}",
           "--implementation=cp", *[f"--platform={p}" for p in PLATFORMS], "-d", str(folder), *specs]
    subprocess.run(cmd, check=True)


def finish(folder: Path, limit_mb: float) -> int:
    """Strip Ray's jar, report the size; 1 when over the limit."""
    for wheel in folder.glob("ray-*.whl"):
        with zipfile.ZipFile(wheel) as z:
            has_jar = RAY_JAR in z.namelist()
        if has_jar:
            before = wheel.stat().st_size / 2**20
            strip_ray_jar(wheel)
            print(f"{wheel.name}: {before:.0f} MB -> {wheel.stat().st_size / 2**20:.0f} MB without {RAY_JAR}")
    total = folder_mb(folder)
    wheels = sorted(folder.glob("*.whl"), key=lambda f: -f.stat().st_size)
    print(f"{folder}: {len(wheels)} wheels, {total:.1f} MB")
    if total > limit_mb:
        largest = ", ".join(f"{w.name} ({w.stat().st_size / 2**20:.0f} MB)" for w in wheels[:5])
        print(f"over the {limit_mb:g} MB limit; largest: {largest}. Pass --have with the GPU machine's `pip freeze` "
              "to leave out what it already has.", file=sys.stderr)
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder", type=Path, help="wheel folder to fill (created)")
    parser.add_argument("--have", type=Path, help="`pip freeze` of the GPU machine: packages it has are not downloaded")
    parser.add_argument("--python", default="3.12", help="the GPU machine's Python (default 3.12)")
    parser.add_argument("--limit-mb", type=float, default=64.0, help="fail when the folder is larger (default 64)")
    args = parser.parse_args(argv)
    if args.have is not None and not args.have.is_file():
        print(f"error: --have: {args.have} is not a file (expected the output of `pip freeze` on the GPU machine)", file=sys.stderr)
        return 2
    if not re.fullmatch(r"3\.\d+", args.python):
        print(f"error: --python: {args.python!r} is not a version like 3.12", file=sys.stderr)
        return 2
    have = installed_names(args.have.read_text()) if args.have else set()
    args.folder.mkdir(parents=True, exist_ok=True)
    items = wanted(resolve(args.python), have)
    print(f"downloading {len(items)} wheels: {', '.join(sorted(i['metadata']['name'] for i in items))}")
    download(items, args.folder, args.python)
    return finish(args.folder, args.limit_mb)


if __name__ == "__main__":
    sys.exit(main())
