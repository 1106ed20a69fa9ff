"""Same bytes whatever the host CPU: the pins of ``stages.common.cpu`` hold in every stage process.

The data stages (every stage without TensorFlow) run twice on a tiny phantom cohort: once as this
machine runs them, once as an older CPU would, with numpy's run-time dispatch lowered
(``NPY_DISABLE_CPU_FEATURES``), OpenBLAS told it runs on a Sandy Bridge and libjpeg-turbo's SIMD
off (``JSIMD_FORCENONE``). Every output must be byte-identical. Without the pins the same
comparison finds dozens of differing phantoms (a rendered pixel one grey level off).

Where ``qemu-x86_64`` is installed (``.ci/run`` installs Debian's ``qemu-user``), the same stages
also run on an emulated AMD EPYC (Zen 2: AVX2, no AVX-512, AMD's cache layout), another CPU maker
than this machine's, and must give the same bytes again.
"""

from __future__ import annotations

import hashlib
import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from stages.common import cpu

REPO = Path(__file__).resolve().parents[1]
LOWERED = {
    "NPY_DISABLE_CPU_FEATURES": "X86_V3 X86_V4 AVX512_ICL AVX512_SPR",
    "OPENBLAS_CORETYPE": "Sandybridge",
    "JSIMD_FORCENONE": "1",
}
TINY = {
    "synthetic": {"n_patients": 8, "n_pretrain": 16, "n_corrupt_files": 1, "plant_leaks": 2},
    "ingest": {"max_reject_fraction": 0.5, "image_size": 32},
    "split": {"val_fraction": 0.25, "test_fraction": 0.25},
}
COMMANDS = [
    ["stages.acquire", "--out", "data/raw", "--downloads", "data/downloads"],
    ["stages.ingest", "--raw", "data/raw", "--images", "data/images", "--tables", "data/tables"],
    ["stages.group", "--raw", "data/raw", "--tables", "data/tables", "--metrics", "metrics/cohort.json"],
    ["stages.split", "--raw", "data/raw", "--tables", "data/tables", "--metrics", "metrics/split.json"],
]
pytestmark = pytest.mark.skipif(platform.machine() != "x86_64", reason="the CPU pins apply on x86-64 only")


def _params(workdir: Path) -> None:
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    for section, values in TINY.items():
        params[section].update(values)
    (workdir / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


def run_data_stages(workdir: Path, env: dict[str, str], prefix: list[str] = ()) -> dict[str, str]:
    """Run the data stages in ``workdir``; md5 of every file they wrote, by relative path."""
    workdir.mkdir(parents=True)
    _params(workdir)
    env = {**env, "PYTHONPATH": str(REPO), "PYTHONHASHSEED": "0"}
    for command in COMMANDS:
        result = subprocess.run([*prefix, sys.executable, "-m", *command], cwd=workdir, env=env,
                                capture_output=True, text=True, timeout=1800)
        assert result.returncode == 0, f"{command[0]} failed:\n{result.stderr[-3000:]}"
    return {path.relative_to(workdir).as_posix(): hashlib.md5(path.read_bytes()).hexdigest()
            for path in sorted(workdir.rglob("*")) if path.is_file() and "params.yaml" != path.name}


def differences(first: dict[str, str], second: dict[str, str]) -> list[str]:
    return sorted(name for name in set(first) | set(second) if first.get(name) != second.get(name))


@pytest.fixture(scope="module")
def as_this_machine(tmp_path_factory) -> dict[str, str]:
    return run_data_stages(tmp_path_factory.mktemp("cpu") / "host", dict(os.environ))


def test_data_stages_write_the_same_bytes_with_lowered_cpu_dispatch(as_this_machine, tmp_path):
    lowered = run_data_stages(tmp_path / "lowered", {**os.environ, **LOWERED})
    assert len(as_this_machine) > 50  # raw DICOMs, PNGs, JPEGs, tables, metrics
    assert differences(as_this_machine, lowered) == []


@pytest.mark.slow  # about 3 minutes under emulation
@pytest.mark.skipif(shutil.which("qemu-x86_64") is None,
                    reason="qemu-x86_64 not installed (Debian package qemu-user; .ci/run installs it)")
def test_data_stages_write_the_same_bytes_on_an_emulated_amd_cpu(as_this_machine, tmp_path):
    emulated = run_data_stages(tmp_path / "epyc", dict(os.environ), prefix=["qemu-x86_64", "-cpu", "EPYC-Rome"])
    assert differences(as_this_machine, emulated) == []


def test_the_pins_hold_in_a_stage_process_whatever_the_environment_says():
    hostile = {**os.environ, "NPY_DISABLE_CPU_FEATURES": "AVX512_SPR", "OPENBLAS_CORETYPE": "Haswell",
               "ONEDNN_MAX_CPU_ISA": "AVX512_CORE_AMX", "TF_ENABLE_ONEDNN_OPTS": "0"}
    probe = ("import stages, json, os, numpy, threadpoolctl\n"
             "from stages.common import cpu\n"
             "blas = [i['architecture'] for i in threadpoolctl.threadpool_info() if i['user_api'] == 'blas']\n"
             "print(json.dumps({'dispatch': cpu.numpy_dispatch(), 'blas': blas, 'report': cpu.platform_report(),\n"
             "                  'isa': os.environ['ONEDNN_MAX_CPU_ISA']}))\n")
    result = subprocess.run([sys.executable, "-c", probe], env={**hostile, "PYTHONPATH": str(REPO)},
                            capture_output=True, text=True, check=True)
    import json
    seen = json.loads(result.stdout)
    assert seen["dispatch"] == [] and seen["blas"] == ["Nehalem"] and seen["isa"] == "AVX2"
    assert seen["report"]["pinned"] is True


def test_opting_out_is_reported():
    environ = {cpu.OPT_OUT: "off"}
    assert cpu.pin(environ) is False and "NPY_ENABLE_CPU_FEATURES" not in environ
    environ = {"NPY_DISABLE_CPU_FEATURES": "X86_V3"}
    assert cpu.pin(environ) is True
    assert environ == {**cpu.PINNED_ENVIRONMENT}


def test_every_stage_says_when_the_pins_are_off():
    def stderr_of_import(extra: dict) -> str:
        environ = {k: v for k, v in os.environ.items() if k != cpu.OPT_OUT}
        return subprocess.run([sys.executable, "-c", "import stages"], env={**environ, **extra,
                              "PYTHONPATH": str(REPO)}, capture_output=True, text=True, check=True).stderr
    assert cpu.UNPINNED_WARNING in stderr_of_import({cpu.OPT_OUT: "off"})
    assert stderr_of_import({}) == ""
