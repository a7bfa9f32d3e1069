"""What ``train_colab.sh`` asks of Python: which parts of training can use this machine's GPU, and
how the GPU run's stage times compare with the CPU run's.

    python training_colab/colab_gpu.py devices --params training_colab/params_gpu.yaml \
        --out-params P_GPU --cpu-params P_CPU --record devices.json
    python training_colab/colab_gpu.py timings --gpu ARTIFACTS_GPU [--cpu ARTIFACTS_CPU] \
        [--devices devices.json] --out timings_gpu_vs_cpu.json

``devices`` tries each GPU part for real, through the package's own code, on a few rows: ALS with
``implicit``'s CUDA build (``implicit.gpu.HAS_CUDA``, then a fit on the GPU: HAS_CUDA says the
extension loaded, not that its kernels run on this GPU) and LightGBM's OpenCL ``gpu`` device (after
registering NVIDIA's OpenCL driver with the ICD loader when the driver library is there and no
vendor file names it). A part that fails falls back to the CPU, with the reason printed; the
parameters the run will use are written to ``--out-params`` (``--params`` with ``als.use_gpu`` and
``ranker.device`` set to what works) and checked by ``recommndr.params.load_train_config``.
``--cpu-params`` gets the same parameters with both parts on the CPU (the baseline). Exit 0 unless
the parameters themselves are bad.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import yaml

ICD_DIR = Path("/etc/OpenCL/vendors")
NVIDIA_OPENCL = "libnvidia-opencl.so.1"
# where NVIDIA's driver libraries live besides the loader's path (Colab mounts them in /usr/lib64-nvidia)
DRIVER_DIRS = ("/usr/lib64-nvidia", "/usr/lib/x86_64-linux-gnu", "/usr/lib64", "/usr/local/nvidia/lib64")
WHEEL_ARCHS = "8.0, 8.6, 9.0, 10.0 and 12.0"  # implicit 0.7.3's CUDA 13 wheel (implicit/gpu/CMakeLists.txt)


@dataclass
class Part:
    """One part of training: the device it will use and why."""

    device: str  # "gpu" or "cpu"
    detail: str


def gpu_info() -> dict[str, str] | None:
    """The first NVIDIA GPU's name, driver and compute capability, or None when nvidia-smi sees none."""
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return None
    try:
        out = subprocess.run(
            [smi, "--query-gpu=name,driver_version,compute_cap", "--format=csv,noheader"],
            capture_output=True, text=True, timeout=60, check=True,
        ).stdout.strip()  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return None
    if not out:
        return None
    fields = [f.strip() for f in out.splitlines()[0].split(",")]
    return dict(zip(("name", "driver", "compute_capability"), fields, strict=False))


def library_found(name: str, ld_library_path: str, ldconfig: str, extra_dirs: tuple[str, ...]) -> bool:
    """Whether the dynamic loader can find ``name``: in ``ldconfig -p``'s listing, on
    LD_LIBRARY_PATH, or in one of ``extra_dirs``."""
    if name in ldconfig:
        return True
    dirs = [d for d in ld_library_path.split(":") if d] + list(extra_dirs)
    return any((Path(d) / name).exists() for d in dirs)


def ldconfig_listing() -> str:
    exe = shutil.which("ldconfig") or "/sbin/ldconfig"
    try:
        return subprocess.run([exe, "-p"], check=False, capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return ""


def ensure_nvidia_icd(vendors: Path, driver_found: bool) -> str:
    """Register NVIDIA's OpenCL driver with the ICD loader that LightGBM's wheel carries: the loader
    reads ``vendors/*.icd``; NVIDIA's containers (Colab's among them) mount the driver library but
    not that file. Returns what it found or did."""
    if vendors.is_dir():
        for icd in sorted(vendors.glob("*.icd")):
            try:
                if "nvidia" in icd.read_text().lower():
                    return f"{icd} names NVIDIA's OpenCL driver"
            except OSError:
                continue
    if not driver_found:
        return f"no {NVIDIA_OPENCL} (NVIDIA's OpenCL driver) on the loader's path"
    try:
        vendors.mkdir(parents=True, exist_ok=True)
        (vendors / "nvidia.icd").write_text(NVIDIA_OPENCL + "\n")
    except OSError as exc:
        return f"could not write {vendors / 'nvidia.icd'} ({exc}): run as root or write it yourself"
    return f"wrote {vendors / 'nvidia.icd'} ({NVIDIA_OPENCL})"


def probe_als() -> Part:
    """ALS on the GPU through the package's own fit, on a 64 x 48 matrix."""
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            import implicit
            import implicit.gpu
    except Exception as exc:  # an rmm or CUDA library that breaks the import itself
        return Part("cpu", f"importing implicit failed: {exc!r}")
    version = getattr(implicit, "__version__", "?")
    said = "; ".join(str(w.message) for w in caught if "GPU" in str(w.message) or "CUDA" in str(w.message))
    if not implicit.gpu.HAS_CUDA:
        if said:
            why = said
        elif getattr(implicit.gpu, "HAS_RMM", True) is False:
            why = "RMM is not installed (implicit's GPU code needs it: rmm-cu13 for the PyPI wheel)"
        else:
            why = "no CUDA extension in this build, or it did not load"
        return Part("cpu", f"implicit {version}: implicit.gpu.HAS_CUDA is False: {why}")
    import numpy as np
    import scipy.sparse as sp

    from recommndr.params import ALSConfig
    from recommndr.retrieval.als import fit_als_matrix

    conf = sp.random(64, 48, density=0.2, format="csr", dtype=np.float32, random_state=0)
    try:
        users, _ = fit_als_matrix(conf, ALSConfig(factors=32, iterations=2, use_gpu=True), seed=0)
    except Exception as exc:
        return Part(
            "cpu",
            f"implicit {version}: implicit.gpu.HAS_CUDA is True but a fit on the GPU failed: {exc} "
            f"(the PyPI wheel's CUDA kernels are built for compute capability {WHEEL_ARCHS}; "
            "IMPLICIT_FROM_SOURCE=1 builds them for this GPU)",
        )
    return Part(
        "gpu",
        f"implicit {version}: implicit.gpu.HAS_CUDA is True; a fit on the GPU passed ({users.shape[0]} users)",
    )


def probe_ranker() -> Part:
    """LightGBM's ``gpu`` (OpenCL) device through the package's own ranker, on 600 rows."""
    import lightgbm as lgb
    import numpy as np

    from recommndr.params import RankerConfig
    from recommndr.ranking.features import FEATURES
    from recommndr.ranking.ranker import TrainingSet, train_ranker

    rng = np.random.default_rng(0)
    ts = TrainingSet(
        rng.random((600, len(FEATURES)), dtype=np.float32),
        rng.integers(0, 3, 600).astype(np.int32),
        np.full(30, 20, dtype=np.int64),
    )
    cfg = RankerConfig(n_estimators=10, num_leaves=7, min_child_samples=5, device="gpu", threads=1)
    try:
        train_ranker(ts, cfg, seed=0)
    except Exception as exc:
        return Part(
            "cpu",
            f"LightGBM {lgb.__version__}: device 'gpu' (OpenCL) failed: {str(exc).strip()} "
            "(the PyPI wheel has the OpenCL 'gpu' device, not 'cuda'; it needs an OpenCL driver "
            "registered in /etc/OpenCL/vendors)",
        )
    return Part("gpu", f"LightGBM {lgb.__version__}: device 'gpu' (OpenCL) trained a ranker")


def write_params(src: Path, dst: Path, als_gpu: bool, ranker_gpu: bool, note: str) -> None:
    """``src`` with ``train.als.use_gpu`` and ``train.ranker.device`` set, checked as TrainConfig."""
    from recommndr.params import load_train_config

    raw: dict[str, Any] = yaml.safe_load(src.read_text()) or {}
    train = raw.setdefault("train", {})
    train.setdefault("als", {})["use_gpu"] = als_gpu
    train.setdefault("ranker", {})["device"] = "gpu" if ranker_gpu else "cpu"
    dst.parent.mkdir(parents=True, exist_ok=True)
    dst.write_text(f"# {note}\n" + yaml.safe_dump(raw, sort_keys=False))
    load_train_config(dst)  # raises UserInputError on a bad file


def devices(args: argparse.Namespace) -> int:
    gpu = gpu_info()
    if gpu is None:
        reason = "no NVIDIA GPU visible (nvidia-smi found none): choose a GPU runtime"
        als, ranker, icd = Part("cpu", reason), Part("cpu", reason), "not checked (no GPU)"
        print(f"GPU: none. {reason}; everything trains on the CPU.")
    else:
        print(
            f"GPU: {gpu.get('name')}, driver {gpu.get('driver')}, compute capability {gpu.get('compute_capability')}"
        )
        found = library_found(
            NVIDIA_OPENCL, os.environ.get("LD_LIBRARY_PATH", ""), ldconfig_listing(), DRIVER_DIRS
        )
        icd = ensure_nvidia_icd(Path(args.icd_dir), found)
        print(f"OpenCL: {icd}")
        als, ranker = probe_als(), probe_ranker()
    for name, part in (("ALS (implicit)", als), ("ranker (LightGBM)", ranker)):
        if part.device == "gpu":
            print(f"{name}: GPU. {part.detail}")
        else:
            print(f"{name}: falling back to the CPU. {part.detail}")
    src = Path(args.params)
    write_params(src, Path(args.out_params), als.device == "gpu", ranker.device == "gpu",
                 f"written by training_colab/colab_gpu.py from {src}: the devices that work here")  # fmt: skip
    if args.cpu_params:
        write_params(src, Path(args.cpu_params), False, False,
                     f"written by training_colab/colab_gpu.py from {src}: the CPU baseline")  # fmt: skip
    record = {
        "python": platform.python_version(),
        "gpu": gpu,
        "opencl_icd": icd,
        "als": asdict(als),
        "ranker": asdict(ranker),
    }
    Path(args.record).parent.mkdir(parents=True, exist_ok=True)
    Path(args.record).write_text(json.dumps(record, indent=2) + "\n")
    return 0


def stage_seconds(artifacts: Path) -> dict[str, float]:
    data = json.loads((artifacts / "timings.json").read_text())
    return {k: float(v) for k, v in data["seconds"].items()}


def compare(gpu: dict[str, float], cpu: dict[str, float] | None) -> dict[str, Any]:
    """Each stage's seconds in both runs, and the ALS fits (every stage named ``…: ALS``) summed."""
    als = [k for k in gpu if k.endswith(": ALS")]
    out: dict[str, Any] = {
        "stages": {k: {"gpu_s": v, "cpu_s": (cpu or {}).get(k)} for k, v in gpu.items()},
        "als": {"stages": als, "gpu_s": sum(gpu[k] for k in als)},
    }
    if cpu is not None:
        cpu_als = sum(cpu.get(k, 0.0) for k in als)
        out["als"]["cpu_s"] = cpu_als
        out["als"]["speedup"] = cpu_als / out["als"]["gpu_s"] if out["als"]["gpu_s"] > 0 else None
    return out


def timings(args: argparse.Namespace) -> int:
    gpu = stage_seconds(Path(args.gpu))
    cpu_dir = Path(args.cpu) if args.cpu else None
    cpu = stage_seconds(cpu_dir) if cpu_dir is not None and (cpu_dir / "timings.json").exists() else None
    result = compare(gpu, cpu)
    if args.devices and Path(args.devices).exists():
        result["devices"] = json.loads(Path(args.devices).read_text())
    result["gpu_artifacts"], result["cpu_artifacts"] = str(args.gpu), str(cpu_dir) if cpu else None
    used = result.get("devices", {})
    als_on, ranker_on = (used.get(p, {}).get("device", "?").upper() for p in ("als", "ranker"))
    print(f"| stage | this run (ALS on {als_on}, ranker on {ranker_on}) s | CPU baseline s |")
    print("|---|---:|---:|")
    for k, row in result["stages"].items():
        c = "" if row["cpu_s"] is None else f"{row['cpu_s']:.1f}"
        print(f"| {k} | {row['gpu_s']:.1f} | {c} |")
    total_cpu = "" if cpu is None else f"{sum(cpu.values()):.1f}"
    print(f"| all stages | {sum(gpu.values()):.1f} | {total_cpu} |")
    a = result["als"]
    line = f"ALS fits ({len(a['stages'])}): {a['gpu_s']:.1f} s in this run (ALS on {als_on})"
    if "cpu_s" in a:
        line += f", {a['cpu_s']:.1f} s on the CPU"
        if a.get("speedup"):
            line += f" ({a['speedup']:.1f}x)"
    else:
        line += " (no CPU baseline run)"
    print(line)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"written: {args.out}")
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="colab_gpu.py", description=__doc__.split("\n")[0] if __doc__ else None)
    sub = p.add_subparsers(dest="cmd", required=True)
    d = sub.add_parser("devices", help="try each GPU part; write the parameters that work here")
    d.add_argument("--params", required=True)
    d.add_argument("--out-params", required=True)
    d.add_argument("--cpu-params")
    d.add_argument("--record", required=True)
    d.add_argument("--icd-dir", default=str(ICD_DIR))
    t = sub.add_parser("timings", help="the GPU run's stage times next to the CPU baseline's")
    t.add_argument("--gpu", required=True)
    t.add_argument("--cpu")
    t.add_argument("--devices")
    t.add_argument("--out", required=True)
    args = p.parse_args(argv)
    return int(devices(args) if args.cmd == "devices" else timings(args))


if __name__ == "__main__":
    sys.exit(main())
