"""The seed-compatible ``main.py`` and ``code/compare_ground_truth.py`` command lines."""

from __future__ import annotations

import argparse
import csv
import os
from pathlib import Path
import subprocess
import sys

import pytest

from brainfly.bench import add_bench_arguments
from brainfly.bench.command import config_from_args, targets_from_args

ROOT = Path(__file__).resolve().parents[1]


def run(args, cwd=ROOT, timeout=120):
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"))
    return subprocess.run([sys.executable, *args], cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env)


def parse(argv):
    return add_bench_arguments(argparse.ArgumentParser()).parse_args(argv)


@pytest.mark.parametrize("argv, labels, t_runs, n_runs", [
    ([], ["event", "torch-cpu", "torch-cuda", "brian2-standalone", "brian2", "nest", "brian2cuda", "nestgpu"],
     [0.1, 1, 10, 100, 1000], [1, 4, 8, 16, 32]),
    (["--t_run", "0.1", "1", "10", "--n_run", "1"], None, [0.1, 1, 10], [1]),
    (["--brian2-cpu", "--pytorch", "--t_run", "1", "--n_run", "1", "4"], ["torch-cuda", "brian2-standalone"],
     [1], [1, 4]),
    (["--brian2cuda-gpu", "--nestgpu", "--event", "--torch-cpu", "--brian2-runtime"],
     ["event", "torch-cpu", "brian2", "brian2cuda", "nestgpu"], None, None),
    (["--nest", "--nestgpu"], ["nest", "nestgpu"], None, None),
    (["--t-run", "0.5", "--n-run", "2", "--engines", "event", "brian2:codegen_target=cython"],
     ["event", "brian2-cython"], [0.5], [2]),
])
def test_seed_flags_parse(argv, labels, t_runs, n_runs):
    args = parse(argv)
    cfg = config_from_args(args)
    if labels is not None:
        assert [t.label for t in targets_from_args(args)] == labels
    if t_runs is not None:
        assert cfg.t_runs == t_runs
    if n_runs is not None:
        assert cfg.n_runs == n_runs
    assert cfg.experiment.name == "sugar"


def test_log_file_flags():
    assert config_from_args(parse(["--log_file", "x/y.log"])).log_file == Path("x/y.log")
    assert config_from_args(parse(["--no_log_file"])).log_file is None
    assert config_from_args(parse([])).log_file == Path("data/results/benchmarks.log")
    assert config_from_args(parse(["--experiment", "p9"])).experiment.name == "p9"


def test_main_py_help_and_dry_run():
    out = run(["main.py", "--help"])
    assert out.returncode == 0
    for flag in ("--brian2-cpu", "--brian2cuda-gpu", "--pytorch", "--nestgpu", "--t_run", "--n_run", "--log_file",
                 "--no_log_file", "--experiment", "--event", "--torch-cpu", "--brian2-runtime", "--timeout",
                 "--dry-run"):
        assert flag in out.stdout
    out = run(["main.py", "--brian2-cpu", "--pytorch", "--t_run", "1", "--n_run", "1", "4", "--dry-run"])
    assert out.returncode == 0, out.stderr
    assert "4 point(s)" in out.stdout and "benchmark grid" in out.stdout
    assert "brian2-standalone_sugar_t1_n4.parquet" in out.stdout and "torch-cuda_sugar_t1_n1.parquet" in out.stdout
    assert out.stdout.count(".parquet") == 4


def test_main_py_rejects_bad_values():
    out = run(["main.py", "--t_run", "-1", "--dry-run"])
    assert out.returncode == 2 and "t_run" in out.stderr
    out = run(["main.py", "--experiment", "sugr", "--dry-run"])
    assert out.returncode == 2 and "sugar" in out.stderr


def test_main_py_end_to_end_reports_skips(tmp_path, connectome_files):
    data = tmp_path / "net"
    connectome_files(data)
    exp = tmp_path / "tiny.toml"
    exp.write_text('name = "tiny"\nt_run = 0.01\nn_trials = 1\n[[stimuli]]\nneurons = [11, 22]\nrate_hz = 100.0\n')
    out = run([str(ROOT / "main.py"), "--nestgpu", "--engines", "imaginary-engine", "--experiment", str(exp), "--data", str(data),
               "--t_run", "0.01", "--n_run", "1", "2", "--no-progress"], cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    rows = list(csv.DictReader(open(tmp_path / "data" / "benchmark-results.csv")))
    assert len(rows) == 4 and {r["status"] for r in rows} == {"skipped"}
    reasons = {r["engine"] if "engine" in r else r.get("target", ""): r["reason"] for r in rows}
    assert any("not registered" in why for why in reasons.values())  # imaginary-engine
    # NEST GPU is registered but not built here (nor is there a GPU): skipped, saying how to install it
    assert any("brainfly install nestgpu" in why for why in reasons.values())
    assert (tmp_path / "data" / "results" / "benchmarks.log").exists()


def test_compare_script_help():
    out = run(["code/compare_ground_truth.py", "--help"])
    assert out.returncode == 0 and "--t_run" in out.stdout and "--files" in out.stdout
