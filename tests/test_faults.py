"""Fault tests: a run killed with SIGKILL (between parts, or inside a part's write) resumes to the same files.

The run is a real one (the event engine on a small synthetic connectome, one trial per
chunk) in a child process; the child is instrumented only from the outside (a pause after
each part, or a kill inside the write of one part), never through an option of brainfly.
"""

import json
import os
from pathlib import Path
import signal
import subprocess
import sys
import time

import pandas as pd
import pyarrow.parquet as pq
import pytest

import brainfly
from brainfly.connectome.synthetic import generate_synthetic, write_synthetic
from brainfly.errors import DataError
from brainfly.results import SpikeResult
from brainfly.runner import output_paths

pytestmark = pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="SIGKILL is POSIX-only")

N_TRIALS = 16
EXPERIMENT = dict(name="fault", stimulate={"P9": 200}, n_trials=N_TRIALS, t_run=0.1, seed=7)

CHILD = """
import os, signal, sys, time
from pathlib import Path
import brainfly
from brainfly import results, runner

folder, out, mode = sys.argv[1:4]
if mode == "slow":  # a pause after each finished part, parked after the fourth: the kill lands mid-run
    write, count = runner._Parts.write, [0]
    def slow(self, part):
        write(self, part)
        count[0] += 1
        time.sleep(0.05 if count[0] < 4 else 60)
    runner._Parts.write = slow
elif mode == "die-writing":  # SIGKILL inside the write of the third part, half of its bytes written
    real, count = results.atomic_write, [0]
    def dying(path, write):
        if Path(path).name.startswith("trials-"):
            count[0] += 1
            if count[0] == 3:
                def half(tmp):
                    write(tmp)
                    data = tmp.read_bytes()
                    tmp.write_bytes(data[: len(data) // 2])
                    os.kill(os.getpid(), signal.SIGKILL)
                return real(path, half)
        return real(path, write)
    results.atomic_write = dying
brainfly.run(brainfly.Experiment(**EXPERIMENT), data=folder, engine="event", out=out, chunk_trials=1, progress=False)
""".replace("**EXPERIMENT", "**" + repr(EXPERIMENT))


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return write_synthetic(generate_synthetic(600), tmp_path_factory.mktemp("synthetic-600"))


@pytest.fixture(scope="module")
def uninterrupted(data, tmp_path_factory):
    out = tmp_path_factory.mktemp("whole") / "spikes.parquet"
    run_in_tests(data, out)
    return out


def child(data: Path, out: Path, mode: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", CHILD, str(data), str(out), mode],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def run_in_tests(data: Path, out: Path, chunk_trials: int = 1) -> None:
    brainfly.run(brainfly.Experiment(**EXPERIMENT), data=data, engine="event", out=out, chunk_trials=chunk_trials,
                 progress=False)


def whole_parts(out: Path) -> list[str]:
    """Names of the finished parts, each read back whole; and no finished output yet."""
    assert not out.exists()
    done = parts_of(out)
    for part in done:
        SpikeResult.read_parquet(part)
    return [p.name for p in done]


def parts_of(out: Path) -> list[Path]:
    return sorted(output_paths(out)["parts"].glob("trials-*.parquet"))


def assert_same_files(out: Path, whole: Path) -> None:
    cols = ["t", "trial", "flywire_id", "step"]
    a, b = pd.read_parquet(out)[cols], pd.read_parquet(whole)[cols]
    assert len(a) > 0 and a.equals(b)
    assert SpikeResult.read_parquet(out).trials == list(range(N_TRIALS))
    pa, pb = output_paths(out), output_paths(whole)
    assert pa["rates"].read_bytes() == pb["rates"].read_bytes()
    assert pb["front"].exists() and pd.read_parquet(pa["front"]).equals(pd.read_parquet(pb["front"]))
    assert not pa["parts"].exists()
    assert not [p.name for p in out.parent.iterdir() if p.name.endswith(".part")]
    timing = {"timings", "timings_s", "wall_s", "outputs", "compiled"}  # how each process ran, not what
    ha, hb = header(out), header(whole)
    assert {k: v for k, v in ha.pop("meta").items() if k not in timing} == \
        {k: v for k, v in hb.pop("meta").items() if k not in timing}
    assert ha == hb
    # the connectome was synthetic: every file says so
    assert ha["synthetic"] is True and pd.read_csv(pa["rates"]).synthetic.all()
    assert header(pa["front"])["synthetic"] is True


def header(path: Path) -> dict:
    return json.loads(pq.read_schema(path).metadata[b"brainfly"])


def test_a_run_killed_between_parts_resumes_to_the_same_files(data, uninterrupted, tmp_path):
    out = tmp_path / "spikes.parquet"
    proc = child(data, out, "slow")
    deadline = time.monotonic() + 120
    while len(parts_of(out)) < 3:
        assert proc.poll() is None, proc.communicate()[1].decode()[-2000:]
        assert time.monotonic() < deadline, "the child wrote no parts"
        time.sleep(0.005)
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate()
    assert proc.returncode == -signal.SIGKILL
    assert len(whole_parts(out)) in (3, 4)  # killed in the middle
    run_in_tests(data, out)
    assert_same_files(out, uninterrupted)


def test_a_run_killed_while_writing_a_part_leaves_no_truncated_part(data, uninterrupted, tmp_path):
    out = tmp_path / "spikes.parquet"
    proc = child(data, out, "die-writing")
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == -signal.SIGKILL, err.decode()[-2000:]
    assert whole_parts(out) == ["trials-00000-00000.parquet", "trials-00001-00001.parquet"]
    assert [p.name for p in output_paths(out)["parts"].glob(".trials-00002-00002.parquet.*.part")]  # the cut write
    run_in_tests(data, out)
    assert_same_files(out, uninterrupted)


def test_resume_with_other_chunks_runs_each_trial_once(data, uninterrupted, tmp_path):
    # parts of one trial each, resumed with chunks of three: no trial is run twice or merged twice
    out = tmp_path / "spikes.parquet"
    proc = child(data, out, "die-writing")
    proc.communicate(timeout=120)
    assert len(whole_parts(out)) == 2
    run_in_tests(data, out, chunk_trials=3)
    assert_same_files(out, uninterrupted)


def test_a_damaged_front_of_a_part_is_named_with_the_way_out(data, tmp_path):
    out = tmp_path / "spikes.parquet"
    child(data, out, "die-writing").communicate(timeout=120)
    front = output_paths(out)["parts"] / "front-00001-00001.parquet"
    front.write_bytes(front.read_bytes()[:30])
    with pytest.raises(DataError, match=r"front-00001-00001.parquet.*delete .*--no-resume"):
        run_in_tests(data, out)
    assert not out.exists()
