"""The inference benchmark runs end to end on tiny settings and writes a consistent JSON."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
import inference  # noqa: E402

# Slow tier: times every model (about a minute and a half).
pytestmark = pytest.mark.slow


def test_inference_benchmark_writes_consistent_json(tmp_path):
    out = tmp_path / "bench_inference.json"
    returned = inference.main(["--out", str(out), "--size", "64", "--batch", "2", "--warmup", "1",
                               "--repeats", "2", "--models", "covidnet_cxr_s", "densenet121",
                               # conftest has loaded TensorFlow with the training settings already
                               "--onednn", "env"])
    payload = json.loads(out.read_text())
    assert payload == json.loads(json.dumps(returned))
    assert out.read_text() == json.dumps(payload, indent=2, sort_keys=True) + "\n"

    assert set(payload["graphs"]) == {"keras", "keras_folded", "frozen", "litert"}
    rows = [row for graph in payload["graphs"].values() for row in graph.values()]
    assert len(rows) == 8 and all(set(graph) == {"covidnet_cxr_s", "densenet121"} for graph in payload["graphs"].values())
    for row in rows:
        assert len(row["repeat_seconds"]) == 2 and all(s > 0 for s in row["repeat_seconds"])
        assert row["median_seconds"] > 0 and row["first_call_seconds"] > 0 and row["median_cpu_seconds"] >= 0
        assert row["images_per_second"] == pytest.approx(2 / row["median_seconds"], rel=1e-3)
        assert isinstance(row["flops_per_image"], int) and row["flops_per_image"] > 0
        assert row["gflops_per_second"] == pytest.approx(
            row["flops_per_image"] * row["images_per_second"] / 1e9, rel=1e-3, abs=1e-3)
        assert row["throughput_ratio_to_densenet121"] > 0
    goal = payload["goal"]
    assert goal["min_throughput_ratio"] == 2.6
    for graph, models in payload["graphs"].items():
        dense, cxr = models["densenet121"], models["covidnet_cxr_s"]
        assert dense["throughput_ratio_to_densenet121"] == 1.0 and dense["flop_ratio_of_densenet121"] == 1.0
        # 64 px is 1/56 of the pixels of 480 px, so the FLOP ratio stays near the paper's 26.0 / 11.1.
        assert 2.0 < cxr["flop_ratio_of_densenet121"] < 2.6
        assert goal[graph]["throughput_ratio"] == cxr["throughput_ratio_to_densenet121"]
        assert goal[graph]["goal_met"] is (goal[graph]["throughput_ratio"] >= 2.6)

    settings = payload["settings"]
    assert (settings["batch"], settings["input_size"], settings["timed_repeats"], settings["warmup_calls"]) == (2, 64, 2, 1)
    assert settings["xla_jit_compile"] is False and settings["graphs"] == ["keras", "keras_folded", "frozen", "litert"]
    assert isinstance(settings["onednn"], bool) and settings["tensorflow"]
    assert payload["machine"]["cpus"] >= 1


def test_benchmark_does_not_import_training_setup():
    """Training pins one intra-op thread and turns Grappler off; the benchmark must only pull in the model zoo."""
    check = ("import sys; sys.path.insert(0, 'benchmarks'); import inference, stages.models, "
             "stages.models.counting; loaded = [m for m in sys.modules if m.startswith('stages.training')]; "
             "assert not loaded, loaded")
    subprocess.run([sys.executable, "-c", check], cwd=REPO, check=True, capture_output=True)
