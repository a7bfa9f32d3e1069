"""training_colab/: the notebook only calls the script, the script parses, its parameters are a
TrainConfig, and its device check falls back to the CPU part by part (colab_gpu.py)."""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

pytestmark = pytest.mark.unit
ROOT = Path(__file__).resolve().parents[2]
COLAB = ROOT / "training_colab"
SCRIPT = COLAB / "train_colab.sh"
NOTEBOOK = COLAB / "recommndr_colab.ipynb"
URL = re.compile(r"https?://[^\s\"'`)<>\]]+")


def colab_gpu() -> ModuleType:
    spec = importlib.util.spec_from_file_location("colab_gpu", COLAB / "colab_gpu.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules["colab_gpu"] = mod  # dataclasses look their module up
    spec.loader.exec_module(mod)
    return mod


def test_params_gpu_is_a_train_config() -> None:
    from recommndr.params import load_train_config

    cfg = load_train_config(COLAB / "params_gpu.yaml")
    assert cfg.als.use_gpu is True
    assert cfg.ranker.device == "gpu"


def test_params_gpu_is_params_yaml_on_the_gpu() -> None:
    """The CPU baseline (params_gpu.yaml with both parts on the CPU) is the pipeline's training."""
    from recommndr.params import load_train_config

    gpu = load_train_config(COLAB / "params_gpu.yaml")
    on_cpu = gpu.model_copy(
        update={
            "als": gpu.als.model_copy(update={"use_gpu": False}),
            "ranker": gpu.ranker.model_copy(update={"device": "cpu"}),
        }
    )
    assert on_cpu == load_train_config(ROOT / "params.yaml")


def test_script_parses() -> None:
    assert subprocess.run(["bash", "-n", str(SCRIPT)], check=False, capture_output=True).returncode == 0


@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="shellcheck is not installed")
def test_script_passes_shellcheck() -> None:
    out = subprocess.run(["shellcheck", str(SCRIPT)], check=False, capture_output=True, text=True)
    assert out.returncode == 0, out.stdout


def test_script_trains_with_what_the_device_check_wrote() -> None:
    text = SCRIPT.read_text()
    check = text.index("colab_gpu.py devices")
    train = re.search(r'train --data "\$DATA" --out "\$OUT" --params "(\S+)"', text)
    assert train is not None and train.group(1) == "$REPORT/params_gpu_effective.yaml"
    assert check < train.start()


def notebook() -> dict[str, object]:
    nb: dict[str, object] = json.loads(NOTEBOOK.read_text())
    return nb


def test_notebook_is_nbformat_4_with_cell_ids() -> None:
    nb = notebook()
    assert nb["nbformat"] == 4
    cells = nb["cells"]
    assert isinstance(cells, list) and cells
    ids = [c["id"] for c in cells]
    assert len(set(ids)) == len(ids)


def test_notebook_code_only_calls_the_shell() -> None:
    """No logic in the notebook: each code line is a shell or magic command, or the address form."""
    nb = notebook()
    lines = [ln for c in nb["cells"] if c["cell_type"] == "code" for ln in c["source"].splitlines()]  # type: ignore[attr-defined]
    for ln in lines:
        assert ln.startswith(("!", "%")) or re.fullmatch(
            r'REPO_URL = "[^"]*"  # @param \{type:"string"\}', ln
        ), ln
    assert "!bash training_colab/train_colab.sh data/full artifacts/full-gpu" in lines


def test_notebook_clones_no_invented_address() -> None:
    """The notebook clones REPO_URL; every address it names is one README.md gives; when the README
    gives a clone address, REPO_URL's default is that address."""
    nb = notebook()
    src = "\n".join(c["source"] for c in nb["cells"])  # type: ignore[attr-defined]
    readme = (ROOT / "README.md").read_text()
    assert "YOUR-ORG" not in src
    assert '!git clone --depth 1 "$REPO_URL" recommndr' in src
    assert set(URL.findall(src)) <= set(URL.findall(readme))
    default = re.search(r'REPO_URL = "([^"]*)"', src)
    assert default is not None
    readme_clone = re.findall(r"git clone (?:--depth 1 )?(\S+\.git|https://github\.com/\S+)", readme)
    if readme_clone:
        assert default.group(1) == readme_clone[0]
    else:
        assert default.group(1) == ""


def test_write_params_falls_back_part_by_part(tmp_path: Path) -> None:
    from recommndr.params import load_train_config

    mod = colab_gpu()
    out = tmp_path / "p.yaml"
    mod.write_params(COLAB / "params_gpu.yaml", out, als_gpu=True, ranker_gpu=False, note="test")
    cfg = load_train_config(out)
    assert cfg.als.use_gpu is True
    assert cfg.ranker.device == "cpu"
    assert cfg.seed == load_train_config(COLAB / "params_gpu.yaml").seed
    assert out.read_text().startswith("# test\n")


def test_write_params_refuses_a_bad_file(tmp_path: Path) -> None:
    from recommndr.errors import UserInputError

    mod = colab_gpu()
    src = tmp_path / "bad.yaml"
    src.write_text("train:\n  als:\n    factor: 32\n")
    with pytest.raises(UserInputError, match="factor"):
        mod.write_params(src, tmp_path / "out.yaml", als_gpu=False, ranker_gpu=False, note="x")


def test_nvidia_icd_is_written_only_when_missing_and_the_driver_is_there(tmp_path: Path) -> None:
    mod = colab_gpu()
    vendors = tmp_path / "vendors"
    assert "no libnvidia-opencl.so.1" in mod.ensure_nvidia_icd(vendors, driver_found=False)
    assert not vendors.exists()
    assert "wrote" in mod.ensure_nvidia_icd(vendors, driver_found=True)
    assert (vendors / "nvidia.icd").read_text() == "libnvidia-opencl.so.1\n"
    assert "names NVIDIA" in mod.ensure_nvidia_icd(vendors, driver_found=True)


def test_library_found_on_the_loader_path(tmp_path: Path) -> None:
    mod = colab_gpu()
    name = "libnvidia-opencl.so.1"
    assert mod.library_found(name, "", f"\t{name} (libc6,x86-64) => /usr/lib/{name}", ())
    assert not mod.library_found(name, str(tmp_path), "", ())
    (tmp_path / name).touch()
    assert mod.library_found(name, f"/nowhere:{tmp_path}", "", ())
    assert mod.library_found(name, "", "", (str(tmp_path),))


def _artifacts(folder: Path, seconds: dict[str, float]) -> Path:
    folder.mkdir()
    (folder / "timings.json").write_text(json.dumps({"seconds": seconds, "peak_rss_gb_after": {}}))
    return folder


def test_timings_put_the_als_fits_side_by_side(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    mod = colab_gpu()
    gpu = _artifacts(
        tmp_path / "gpu", {"load data": 1.0, "A (ranker data): ALS": 2.0, "B (served): ALS": 3.0}
    )
    cpu = _artifacts(
        tmp_path / "cpu", {"load data": 1.0, "A (ranker data): ALS": 20.0, "B (served): ALS": 30.0}
    )
    out = tmp_path / "cmp.json"
    assert mod.main(["timings", "--gpu", str(gpu), "--cpu", str(cpu), "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["als"] == {
        "stages": ["A (ranker data): ALS", "B (served): ALS"],
        "gpu_s": 5.0,
        "cpu_s": 50.0,
        "speedup": 10.0,
    }
    assert result["stages"]["load data"] == {"gpu_s": 1.0, "cpu_s": 1.0}
    assert "| B (served): ALS | 3.0 | 30.0 |" in capsys.readouterr().out


def test_timings_without_a_cpu_run(tmp_path: Path) -> None:
    mod = colab_gpu()
    gpu = _artifacts(tmp_path / "gpu", {"A (ranker data): ALS": 2.0})
    out = tmp_path / "cmp.json"
    assert mod.main(["timings", "--gpu", str(gpu), "--cpu", str(tmp_path / "none"), "--out", str(out)]) == 0
    assert json.loads(out.read_text())["als"] == {"stages": ["A (ranker data): ALS"], "gpu_s": 2.0}


def test_devices_without_a_gpu_writes_cpu_parameters(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from recommndr.params import load_train_config

    mod = colab_gpu()
    monkeypatch.setattr(mod, "gpu_info", lambda: None)
    args = ["devices", "--params", str(COLAB / "params_gpu.yaml"), "--out-params", str(tmp_path / "p.yaml"),
            "--cpu-params", str(tmp_path / "c.yaml"), "--record", str(tmp_path / "d.json")]  # fmt: skip
    assert mod.main(args) == 0
    for p in ("p.yaml", "c.yaml"):
        cfg = load_train_config(tmp_path / p)
        assert (cfg.als.use_gpu, cfg.ranker.device) == (False, "cpu")
    record = json.loads((tmp_path / "d.json").read_text())
    assert record["gpu"] is None
    assert record["als"]["device"] == record["ranker"]["device"] == "cpu"


def test_devices_probes_each_part_and_goes_on(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With a GPU reported, each part is tried for real; whatever it finds, the run goes on (exit 0)
    with parameters that say what works (here, without CUDA or OpenCL: the CPU)."""
    from recommndr.params import load_train_config

    mod = colab_gpu()
    monkeypatch.setattr(mod, "gpu_info", lambda: {"name": "test", "driver": "0", "compute_capability": "8.0"})
    args = ["devices", "--params", str(COLAB / "params_gpu.yaml"), "--out-params", str(tmp_path / "p.yaml"),
            "--record", str(tmp_path / "d.json"), "--icd-dir", str(tmp_path / "vendors")]  # fmt: skip
    assert mod.main(args) == 0
    record = json.loads((tmp_path / "d.json").read_text())
    cfg = load_train_config(tmp_path / "p.yaml")
    assert cfg.als.use_gpu == (record["als"]["device"] == "gpu")
    assert cfg.ranker.device == record["ranker"]["device"]
    assert "implicit" in record["als"]["detail"]
    assert "LightGBM" in record["ranker"]["detail"]
