"""The cluster example scripts (docs/examples) and the pure helpers of benchmarks/bench_batch.py.

The scripts must compile and show their help without dask-jobqueue or dask-kubernetes, say
clearly when the package is missing, and build the right ``lungai batch`` command and cluster
spec. The benchmark's overhead and throughput figures are checked on hand-made numbers.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

from lungai.batch.cases import read_case_csv

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = {"batch_slurm": "dask_jobqueue", "batch_kubernetes": "dask_kubernetes"}


def load(path: Path) -> ModuleType:
    """Import a script by its path, without running its main (registered, as dataclasses need)."""
    spec = importlib.util.spec_from_file_location(f"_script_{path.stem}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    sys.path.insert(0, str(path.parent))
    try:
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(path.parent))
    return module


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    """benchmarks/bench_batch.py as a module."""
    return load(REPO / "benchmarks" / "bench_batch.py")


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_example_shows_help_without_cluster_package(name: str) -> None:
    result = subprocess.run([sys.executable, str(REPO / "docs" / "examples" / f"{name}.py"), "--help"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "lungai batch" in result.stdout and "--output" in result.stdout


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_example_says_which_package_is_missing(name: str) -> None:
    if importlib.util.find_spec(EXAMPLES[name]) is not None:
        pytest.skip(f"{EXAMPLES[name]} is installed")
    arguments = ["in.csv", "-o", "out"] + (["--image", "lungai:x", "--claim", "data"] if name == "batch_kubernetes"
                                            else [])
    result = subprocess.run([sys.executable, str(REPO / "docs" / "examples" / f"{name}.py"), *arguments],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert f"{EXAMPLES[name].replace('_', '-')} is not installed" in result.stderr


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_example_passes_options_after_dashes_to_lungai_batch(name: str) -> None:
    module = load(REPO / "docs" / "examples" / f"{name}.py")
    required = ["--image", "img", "--claim", "data"] if name == "batch_kubernetes" else []
    args, extra = module.parse_args(["a.csv", "scans/", "-o", "/shared/out", *required, "--", "--tasks", "lungs"])
    command = module.batch_command(args, "tcp://10.0.0.1:8786", extra)
    assert command[1:] == ["-m", "lungai.cli", "batch", "a.csv", "scans/", "-o", "/shared/out",
                           "--scheduler", "tcp://10.0.0.1:8786", "--tasks", "lungs"]


def test_kubernetes_spec_mounts_the_shared_volume_on_workers() -> None:
    module = load(REPO / "docs" / "examples" / "batch_kubernetes.py")
    args, _ = module.parse_args(["a.csv", "-o", "/data/out", "--image", "img", "--claim", "lungai-pvc",
                                 "--mount", "/data", "--workers", "3", "--memory", "6Gi"])
    seen = {}

    def fake_make_cluster_spec(**kwargs):
        seen.update(kwargs)
        return {"spec": {"worker": {"spec": {"containers": [{"name": "worker"}]}}, "scheduler": {}}}

    spec = module.cluster_spec(args, fake_make_cluster_spec)
    worker = spec["spec"]["worker"]["spec"]
    assert worker["volumes"] == [{"name": "lungai-data", "persistentVolumeClaim": {"claimName": "lungai-pvc"}}]
    assert worker["containers"][0]["volumeMounts"] == [{"name": "lungai-data", "mountPath": "/data"}]
    assert seen["n_workers"] == 3 and seen["image"] == "img"
    assert seen["resources"]["limits"]["memory"] == "6Gi"
    assert seen["worker_command"] == ["dask-worker", "--nthreads", "1"]


def test_overhead_per_case_on_hand_made_numbers(bench: ModuleType) -> None:
    # 4 cases of 10, 12, 8 and 10 s of stages: 40 s of stages.
    stages = [10.0, 12.0, 8.0, 10.0]
    assert bench.overhead_per_case(60.0, stages) == pytest.approx(5.0)  # (60 - 40) / 4
    assert bench.overhead_per_case(30.0, stages, slots=2) == pytest.approx(5.0)  # (30 * 2 - 40) / 4
    assert bench.overhead_per_case(30.0, stages) == pytest.approx(-2.5)  # side by side: negative
    with pytest.raises(ValueError):
        bench.overhead_per_case(1.0, [])


def test_stage_seconds_sums_run_timings(bench: ModuleType) -> None:
    findings = json.loads(json.dumps({"run": {"timings_s": {"read": 1.5, "lungs": 6.0, "emphysema": 0.5,
                                                            "write": 1.0}}}))
    assert bench.stage_seconds(findings) == pytest.approx(9.0)
    findings["run"]["timings_s"]["total"] = 9.0
    assert bench.stage_seconds(findings) == pytest.approx(9.0)


def test_throughput_layouts_and_summary(bench: ModuleType) -> None:
    assert bench.throughput_ratio(80.0, 40.0) == pytest.approx(2.0)
    assert bench.parse_layout("2x1") == (2, 1) and bench.parse_layout("3") == (3, 1)
    with pytest.raises(ValueError):
        bench.parse_layout("0x2")
    sequential = bench.Measurement("sequential", 1, 80.0, (15.0, 15.0, 15.0, 15.0))
    batch = bench.Measurement("batch 2x1", 2, 40.0, (16.0, 16.0, 16.0, 16.0))
    row = bench.summarize([batch], reference_wall_s=sequential.wall_s)
    assert row["ratio"] == pytest.approx(2.0) and row["per_min"] == pytest.approx(6.0)
    assert row["overhead"] == pytest.approx(-6.0) and row["slot_overhead"] == pytest.approx(4.0)
    table = bench.markdown_table({"sequential": [sequential], "batch 2x1": [batch]}, 4, "lungs", 1, "test machine")
    assert "| batch 2x1 | 2 | 40.0 | 6.00 | 2.00x | -6.0 | 4.0 | 16.0 |" in table


def test_case_csv_cycles_scans_and_reads_as_a_batch(bench: ModuleType, tmp_path: Path) -> None:
    rows = bench.case_rows(tmp_path, 3)
    assert [case_id for case_id, _ in rows] == ["case01", "case02", "case03"]
    assert rows[0][1] == rows[2][1] == tmp_path / bench.SCANS[0] and rows[1][1] == tmp_path / bench.SCANS[1]
    cases = read_case_csv(bench.write_case_csv(rows, tmp_path / "cases.csv"))
    assert [(case.case_id, case.path) for case in cases] == rows
