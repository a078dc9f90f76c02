"""Bad input never gives a traceback: property tests over everything a user hands ``brainfly run``.

Every input drawn here (the experiment TOML file, the command-line arguments, the
input-schedule file, the connectome files) must either run (exit status 0, the output
written) or be refused with one line on stderr, ``error: ...`` naming the field or file
at fault, exit status 2, and nothing written: no output file, no ``OUT.parts`` folder.
The runs are tiny (a 600-neuron synthetic connectome, a few ms per trial) and the example
counts bounded, so the file runs in well under a minute on two cores.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
from pathlib import Path
import shutil
import tempfile
from typing import Any

from hypothesis import HealthCheck, example, given, settings, strategies as st
import pandas as pd
import pytest

from brainfly import cli
from brainfly.connectome.synthetic import generate_synthetic, write_synthetic

from conftest import write_connectome_files

SETTINGS = settings(max_examples=40, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])

#: A neuron of the 600-neuron synthetic connectome (sugar_GRN and MN9, P9 are named there).
STIM_NAMES = ("sugar_GRN", "P9", "MN9")


@pytest.fixture(scope="module")
def net_folder(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("net")
    write_synthetic(generate_synthetic(600, seed=2), folder)
    return folder


@pytest.fixture(scope="module")
def some_ids(net_folder) -> list[int]:
    ids = pd.read_csv(next(net_folder.glob("Completeness*.csv")), index_col=0).index
    return [int(i) for i in ids[:5]]


# ---------------------------------------------------------------------------- the property
def invoke(argv: list[str]) -> tuple[int, str, str]:
    """``brainfly.cli.main(argv)`` with stdout and stderr captured; (exit status, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli.main(argv)
    return code, out.getvalue(), err.getvalue()


def assert_runs_or_refused(argv: list[str], out: Path, *names: str) -> tuple[int, str]:
    """Run *argv*: exit 0 with *out* written, or exit 2, one ``error:`` line naming one of *names*, nothing written."""
    code, _, err = invoke(argv)
    assert "Traceback" not in err, err
    if code == 0:
        assert out.is_file(), f"exit 0 but {out} not written"
        return code, err
    lines = err.strip().splitlines()
    assert code == 2, (code, err)
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    if names:
        assert any(n.lower() in lines[0].lower() for n in names), (names, lines[0])
    parts = out.with_name(out.name + ".parts")
    assert not out.exists() and not parts.exists(), f"refused run wrote {sorted(out.parent.iterdir())}"
    assert not out.with_name(out.stem + "_rates.csv").exists()
    return code, lines[0]


def fresh_dir() -> Path:
    return Path(tempfile.mkdtemp(prefix="bf-bad-"))


# ---------------------------------------------------------------------------- CLI arguments
NUMBERS = ["0", "-1", "-0", "nan", "NaN", "inf", "-inf", "1e400", "abc", "", " ", "1,5", "0x10", "½", "1e-9"]
T_RUN = st.sampled_from(["0.005", "0.01", "0.00015", "5e6", "1e9"] + NUMBERS)
N_TRIALS = st.sampled_from(["1", "2", "3000000000", "9" * 25, "1.5", "2e0"] + NUMBERS)
SEED = st.sampled_from(["0", "7", "18446744073709551616", "9" * 40, "1.5", "+3"] + NUMBERS)
TOKENS = st.sampled_from(["sugar_GRN", "P9", "MN9", "P8", "mn9", "720575940000000001", "1", "-5", "0", "",
                          " ", "@", "&", "sugar_GRN&MN9", "type:", "a:b", "9" * 25, "名前", "None"])
FREE_TEXT = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=12)
RATE = st.sampled_from(["200", "200Hz", "200 hz", "0", "-5", "nan", "inf", "1e9", "10001", "abc", "", "1e-300",
                        "@", "200@300"])


@st.composite
def stimulate_text(draw) -> str:
    if draw(st.integers(0, 5)) == 0:
        return draw(FREE_TEXT)
    ids = ",".join(draw(st.lists(TOKENS, min_size=0, max_size=3)))
    return f"{ids}@{draw(RATE)}"


ENGINE_OPTION = st.sampled_from(["n_threads=1", "n_threads=0", "n_threads=-1", "n_threads=abc", "n_threads=1e99",
                                 "n_threads=nan", "n_threads=", "bogus=1", "=1", "x", "", "n-threads=1",
                                 "dtype=float32", "device=cuda", "n_threads=true"])


@st.composite
def run_arguments(draw) -> list[str]:
    argv: list[str] = []
    if draw(st.booleans()):
        argv.append(f"--t-run={draw(T_RUN)}")
    else:
        argv.append("--t-run=0.005")
    if draw(st.booleans()):
        argv.append(f"--n-trials={draw(N_TRIALS)}")
    if draw(st.booleans()):
        argv.append(f"--seed={draw(SEED)}")
    for _ in range(draw(st.integers(0, 2))):
        argv.append(f"--stimulate={draw(stimulate_text())}")
    if draw(st.booleans()):
        argv.append(f"--silence={draw(st.one_of(FREE_TEXT, st.lists(TOKENS, max_size=3).map(','.join)))}")
    for _ in range(draw(st.integers(0, 2))):
        argv.append(f"--engine-option={draw(ENGINE_OPTION)}")
    return argv


@SETTINGS
@given(args=run_arguments())
def test_run_arguments_run_or_are_refused(net_folder, args):
    folder = fresh_dir()
    try:
        out = folder / "o.parquet"
        assert_runs_or_refused(["run", "--data", str(net_folder), "--out", str(out), "-q", *args], out)
    finally:
        shutil.rmtree(folder)


@pytest.mark.parametrize("arg,needle", [
    ("--t-run=abc", "--t-run"),
    ("--n-trials=1.5", "--n-trials"),
    ("--seed=x", "--seed"),
    ("--t-run=nan", "t_run"),
    ("--t-run=inf", "t_run"),
    ("--n-trials=3000000000", "n_trials"),
    ("--seed=-1", "seed"),
    ("--stimulate=sugar_GRN@nan", "--stimulate 'sugar_GRN@nan': rate_hz must be a finite number"),
    ("--stimulate=sugar_GRN@-inf", "--stimulate 'sugar_GRN@-inf': rate_hz must be a finite number"),
    ("--stimulate=sugar_GRN@1e9", "rate_hz"),
    ("--stimulate=@200", "no neurons"),
    ("--engine-option=n_threads=abc", "n_threads"),
    ("--engine-option=bogus=1", "bogus"),
    ("--engine-option=x", "KEY=VALUE"),
    ("--engine-option==1", "KEY=VALUE"),
    ("--silence=P8", "silenced"),
])
def test_each_bad_argument_is_named(net_folder, tmp_path, arg, needle):
    out = tmp_path / "o.parquet"
    argv = ["run", "--data", str(net_folder), "--out", str(out), "-q", "--t-run=0.005"]
    if not arg.startswith("--stimulate"):
        argv.append("--stimulate=sugar_GRN@200")
    code, line = assert_runs_or_refused([*argv, arg], out, needle)
    assert code == 2, f"{arg} was not refused"


def test_unknown_neuron_of_a_stimulus_set_reads_well(net_folder, tmp_path):
    out = tmp_path / "o.parquet"
    code, line = assert_runs_or_refused(["run", "--data", str(net_folder), "--out", str(out), "-q", "--t-run=0.005",
                                         "--stimulate=sugar_GRN@200", "--stimulate=P8,MN9@50"], out, "P8")
    assert code == 2
    assert line.startswith("error: stimulus set 1 'P8,MN9' at 50 Hz: unknown neuron name 'P8'")
    assert "Did you mean 'P9'?" in line and "set1" not in line and "0 Hz)" not in line


# ---------------------------------------------------------------------------- the experiment file
def toml_value(v: Any) -> str:
    """A value as TOML text (NaN and inf as TOML writes them)."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, list):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{json.dumps(k)} = {toml_value(x)}" for k, x in v.items()) + "}"
    raise TypeError(v)


ODD = st.sampled_from([True, "x", "", -1, 0, 2 ** 63 - 1, -(2 ** 63), 1.5, -0.0, math.nan, math.inf, -math.inf,
                       1e308, [], [1], ["MN9"], {"a": 1}, "1", "MN9"])
NEURONS = st.one_of(st.lists(st.sampled_from(["sugar_GRN", "P9", "MN9", "P8", 720575940000000001, 0, -5, "",
                                              "9" * 25, True, 1.5]), max_size=3),
                    st.sampled_from(["MN9", "sugar_GRN", 123, "", 1.5, True, {"a": 1}]))


@st.composite
def experiment_toml(draw) -> dict[str, Any]:
    d: dict[str, Any] = {}
    good = {"name": "t", "t_run": 0.005, "n_trials": 1, "seed": 0, "silence_mode": "outgoing"}
    for key, value in good.items():
        choice = draw(st.integers(0, 4))
        if choice == 0:
            d[key] = draw(ODD)
        elif choice == 1:
            continue  # missing: the default
        else:
            d[key] = value
    if draw(st.booleans()):
        d["silenced"] = draw(NEURONS)
    if draw(st.integers(0, 4)) == 0:
        d[draw(st.sampled_from(["rate", "stimuli_hz", "T_run", "params2"]))] = draw(ODD)
    if draw(st.integers(0, 3)) == 0:
        d["input_schedule"] = draw(st.sampled_from(["missing.csv", "", 5, True]))
    params: dict[str, Any] = {}
    for _ in range(draw(st.integers(0, 2))):
        params[draw(st.sampled_from(["v_th_mv", "tau_ms", "dt_ms", "t_dly_ms", "w_syn_mv", "f_poi", "v_0_mv",
                                     "bogus_ms"]))] = draw(ODD)
    stimuli = []
    for _ in range(draw(st.integers(0, 2))):
        s: dict[str, Any] = {}
        if draw(st.integers(0, 5)):
            s["neurons"] = draw(NEURONS) if draw(st.booleans()) else ["sugar_GRN"]
        if draw(st.integers(0, 5)):
            s["rate_hz"] = draw(ODD) if draw(st.booleans()) else 100.0
        if draw(st.integers(0, 4)) == 0:
            s[draw(st.sampled_from(["label", "rate", "Neurons"]))] = draw(ODD)
        stimuli.append(s)
    d["_params"], d["_stimuli"] = params, stimuli
    return d


def write_toml(d: dict[str, Any]) -> str:
    lines = [f"{json.dumps(k)} = {toml_value(v)}" for k, v in d.items() if not k.startswith("_")]
    if d["_params"]:
        lines.append("[params]")
        lines += [f"{k} = {toml_value(v)}" for k, v in d["_params"].items()]
    for s in d["_stimuli"]:
        lines.append("[[stimuli]]")
        lines += [f"{k} = {toml_value(v)}" for k, v in s.items()]
    return "\n".join(lines) + "\n"


@st.composite
def experiment_bytes(draw) -> bytes:
    text = write_toml(draw(experiment_toml()))
    how = draw(st.sampled_from(["utf-8"] * 6 + ["utf-16", "latin-1+", "truncated", "garbage", "empty", "bom"]))
    if how == "utf-16":
        return text.encode("utf-16")
    if how == "latin-1+":
        return text.replace('"t"', '"café"').encode("latin-1")
    if how == "truncated":
        data = text.encode()
        return data[:draw(st.integers(0, max(0, len(data) - 1)))]
    if how == "garbage":
        return draw(st.binary(max_size=40))
    if how == "empty":
        return b""
    if how == "bom":
        return b"\xef\xbb\xbf" + text.encode()
    return text.encode()


@SETTINGS
@given(data=experiment_bytes())
@example(data=b'"input_schedule" = 5\n')
@example(data=b'"input_schedule" = "missing.csv"\n')
def test_experiment_file_runs_or_is_refused(net_folder, data):
    folder = fresh_dir()
    try:
        f = folder / "exp.toml"
        f.write_bytes(data)
        out = folder / "o.parquet"
        code, line = assert_runs_or_refused(["run", str(f), "--data", str(net_folder), "--out", str(out), "-q"],
                                            out)
        if code == 2:
            # named: the file, or the field of the Experiment/params it holds
            assert str(f) in line or "input schedule" in line or "Experiment" in line or "ModelParams" in line or "StimulusSet" in line or \
                "stimulus set" in line or "silenced" in line, line
    finally:
        shutil.rmtree(folder)


@SETTINGS
@given(name=st.text(st.characters(blacklist_categories=("Cs",)), max_size=12))
@example(name="a\x00b")
@example(name="../../outside")
@example(name="/abs")
def test_experiment_names_stay_in_the_output_folder(net_folder, name):
    """Any name: refused in one line, or the default output files lie directly in ./output."""
    folder = fresh_dir()
    cwd = os.getcwd()
    try:
        (folder / "work").mkdir()
        os.chdir(folder / "work")
        f = folder / "exp.toml"
        quoted = '"' + "".join(f"\\u{ord(c):04x}" if ord(c) < 0x20 or c in '"\\\x7f' else c for c in name) + '"'
        f.write_text(f"name = {quoted}\nt_run = 0.005\n[[stimuli]]\nneurons = ['sugar_GRN']\nrate_hz = 100\n",
                     encoding="utf-8")
        code, _, err = invoke(["run", str(f), "--data", str(net_folder), "-q"])
        assert "Traceback" not in err
        written = sorted(p.relative_to(folder) for p in folder.rglob("*") if p.is_file() and p != f)
        if code == 0:
            assert written and all(p.parent == Path("work/output") for p in written), written
        else:
            assert code == 2 and err.startswith("error: ") and len(err.strip().splitlines()) == 1, err
            assert "Experiment.name" in err and not written, (err, written)
    finally:
        os.chdir(cwd)
        shutil.rmtree(folder)


@pytest.mark.parametrize("text,needles", [
    ("silenced = 5\n[[stimuli]]\nneurons = ['sugar_GRN']\nrate_hz = 100\n", ["silenced", "5"]),
    ("t_run = nan\n[[stimuli]]\nneurons = ['sugar_GRN']\nrate_hz = 100\n", ["t_run", "nan"]),
    ("t_run = inf\n[[stimuli]]\nneurons = ['sugar_GRN']\nrate_hz = 100\n", ["t_run"]),
    ("n_trials = 1.0\n[[stimuli]]\nneurons = ['sugar_GRN']\nrate_hz = 100\n", ["n_trials", "integer"]),
    ("n_trials = 9223372036854775807\n[[stimuli]]\nneurons = ['sugar_GRN']\nrate_hz = 100\n", ["n_trials"]),
    ("[[stimuli]]\nneurons = ['sugar_GRN']\nrate_hz = nan\n", ["rate_hz", "nan"]),
    ("[[stimuli]]\nneurons = ['sugar_GRN']\nrate_hz = '100'\n", ["rate_hz", "number"]),
    ("[[stimuli]]\nneurons = ['sugar_GRN']\n", ["stimuli[0]", "rate_hz"]),
    ("[[stimuli]]\nneurons = [1.5]\nrate_hz = 100\n", ["stimuli[0].neurons"]),
    ("[params]\nv_th_mv = 'x'\n[[stimuli]]\nneurons = ['sugar_GRN']\nrate_hz = 100\n", ["v_th_mv", "number"]),
    ("[params]\ntau_ms = nan\n[[stimuli]]\nneurons = ['sugar_GRN']\nrate_hz = 100\n", ["tau_ms"]),
    ("params = 3\n[[stimuli]]\nneurons = ['sugar_GRN']\nrate_hz = 100\n", ["params"]),
    ("stimuli = 3\n", ["stimuli"]),
    ("name = ''\n[[stimuli]]\nneurons = ['sugar_GRN']\nrate_hz = 100\n", ["name"]),
    ("t_run = 0.005\n", ["nothing drives"]),
    ("T_run = 0.005\n" + "[[stimuli]]\nneurons = ['sugar_GRN']\nrate_hz = 100\n", ["unknown key(s) ['T_run']",
                                                                                   "Did you mean 't_run'?"]),
    ("silenced = ['MN9', 'P8']\n[[stimuli]]\nneurons = ['sugar_GRN']\nrate_hz = 100\n", ["silenced", "P8"]),
    ("[[stimuli]]\nneurons = ['sugar_GRN']\nrate_hz = 100\n[[stimuli]]\nneurons = ['sugar_GRN']\nrate_hz = 5\n",
     ["stimulus sets 0 and 1"]),
])
def test_each_bad_experiment_file_is_named(net_folder, tmp_path, text, needles):
    f = tmp_path / "exp.toml"
    f.write_text("t_run = 0.005\n" + text if not text.startswith("t_run") else text)
    out = tmp_path / "o.parquet"
    code, line = assert_runs_or_refused(["run", str(f), "--data", str(net_folder), "--out", str(out), "-q"], out)
    assert code == 2
    for needle in needles:
        assert needle in line, (needle, line)


def test_experiment_file_errors_name_the_file(net_folder, tmp_path):
    f = tmp_path / "exp.toml"
    f.write_text("t_run = -5\n[[stimuli]]\nneurons = ['sugar_GRN']\nrate_hz = 100\n")
    out = tmp_path / "o.parquet"
    code, line = assert_runs_or_refused(["run", str(f), "--data", str(net_folder), "--out", str(out), "-q"], out)
    assert code == 2 and str(f) in line and "t_run" in line and "-5" in line


# ---------------------------------------------------------------------------- the input schedule
@st.composite
def schedule_file(draw, ids: list[int]) -> tuple[str, bytes, int]:
    n_trials = draw(st.integers(1, 3))
    n = draw(st.integers(0, 6))
    cols: dict[str, Any] = {
        "trial": draw(st.lists(st.sampled_from([0, 1, 2, -1, 7, 2 ** 40]), min_size=n, max_size=n)),
        "flywire_id": draw(st.lists(st.sampled_from(ids[:3] + [720575940000000001, -3, 0]), min_size=n, max_size=n)),
        "step": draw(st.lists(st.sampled_from([0, 1, 49, 50, -1, 10 ** 12]), min_size=n, max_size=n)),
    }
    for col in list(cols):
        what = draw(st.integers(0, 9))
        if what == 0:
            del cols[col]
        elif what == 1:
            cols[col] = [float(v) + 0.5 for v in cols[col]]
        elif what == 2:
            cols[col] = [str(v) + "x" for v in cols[col]]
        elif what == 3 and n:
            cols[col] = [None] + cols[col][1:]
    if draw(st.integers(0, 5)) == 0:
        cols["extra"] = [1] * n
    frame = pd.DataFrame(cols)
    fmt = draw(st.sampled_from(["csv", "parquet"]))
    buf = io.BytesIO()
    if fmt == "csv":
        buf.write(frame.to_csv(index=False).encode())
    else:
        frame.to_parquet(buf, index=False)
    data = buf.getvalue()
    how = draw(st.sampled_from(["whole"] * 5 + ["truncated", "empty", "garbage", "utf-16"]))
    if how == "truncated":
        data = data[:draw(st.integers(0, max(0, len(data) - 1)))]
    elif how == "empty":
        data = b""
    elif how == "garbage":
        data = draw(st.binary(max_size=40))
    elif how == "utf-16" and fmt == "csv":
        data = frame.to_csv(index=False).encode("utf-16")
    return fmt, data, n_trials


@SETTINGS
@given(data=st.data())
def test_input_schedule_runs_or_is_refused(net_folder, some_ids, data):
    fmt, raw, n_trials = data.draw(schedule_file(some_ids))
    folder = fresh_dir()
    try:
        sched = folder / f"kicks.{fmt}"
        sched.write_bytes(raw)
        out = folder / "o.parquet"
        code, line = assert_runs_or_refused(
            ["run", "--data", str(net_folder), "--input-schedule", str(sched), "--t-run=0.005",
             f"--n-trials={n_trials}", "--out", str(out), "-q"], out, str(sched))
        if code == 0:  # a schedule that ran drove exactly its own kicks
            kicks = pd.read_csv(sched) if fmt == "csv" else pd.read_parquet(sched)
            assert kicks["trial"].max() + 1 == n_trials
    finally:
        shutil.rmtree(folder)


# ---------------------------------------------------------------------------- the connectome files
@st.composite
def connectome_folder_spec(draw) -> dict[str, Any]:
    return {
        "neuron_list": draw(st.sampled_from(["good"] * 5 + ["duplicate", "negative", "text", "float", "empty",
                                                             "truncated", "header only", "huge", "latin-1", "zero",
                                                             "missing"])),
        "connections": draw(st.sampled_from(["good"] * 5 + ["truncated", "empty", "garbage", "drop column",
                                                             "float index", "string id", "index out of range",
                                                             "negative index", "wrong id", "zero count",
                                                             "sign mismatch", "duplicate", "null", "missing",
                                                             "csv"])),
    }


def make_connectome(folder: Path, spec: dict[str, Any]) -> None:
    ids = [11, 22, 33, 44, 55]
    comp, conn = write_connectome_files(folder, ids)
    how = spec["neuron_list"]
    if how == "duplicate":
        comp.write_text(",Completed\n11,True\n22,True\n33,True\n44,True\n11,True\n")
    elif how == "negative":
        comp.write_text(",Completed\n11,True\n-22,True\n33,True\n44,True\n55,True\n")
    elif how == "text":
        comp.write_text(",Completed\n11,True\nabc,True\n33,True\n44,True\n55,True\n")
    elif how == "float":
        comp.write_text(",Completed\n11.0,True\n22.5,True\n33,True\n44,True\n55,True\n")
    elif how == "empty":
        comp.write_bytes(b"")
    elif how == "truncated":
        comp.write_bytes(comp.read_bytes()[:17])
    elif how == "header only":
        comp.write_text(",Completed\n")
    elif how == "huge":
        comp.write_text(",Completed\n11,True\n99999999999999999999,True\n33,True\n44,True\n55,True\n")
    elif how == "latin-1":
        comp.write_bytes(",Completed\n11,True\n22,Tru\xe9\n33,True\n44,True\n55,True\n".encode("latin-1"))
    elif how == "zero":
        comp.write_text(",Completed\n11,True\n0,True\n33,True\n44,True\n55,True\n")
    elif how == "missing":
        comp.unlink()
    how = spec["connections"]
    frame = pd.read_parquet(conn)
    if how == "truncated":
        conn.write_bytes(conn.read_bytes()[:len(conn.read_bytes()) // 2])
    elif how == "empty":
        conn.write_bytes(b"")
    elif how == "garbage":
        conn.write_bytes(b"PAR1 not really")
    elif how == "drop column":
        frame.drop(columns=["Excitatory"]).to_parquet(conn, index=False)
    elif how == "float index":
        frame.assign(Presynaptic_Index=frame.Presynaptic_Index + 0.5).to_parquet(conn, index=False)
    elif how == "string id":
        frame.assign(Presynaptic_ID=frame.Presynaptic_ID.astype(str)).to_parquet(conn, index=False)
    elif how == "index out of range":
        frame.assign(Postsynaptic_Index=frame.Postsynaptic_Index + 10).to_parquet(conn, index=False)
    elif how == "negative index":
        frame.assign(Postsynaptic_Index=-frame.Postsynaptic_Index - 1).to_parquet(conn, index=False)
    elif how == "wrong id":
        frame.assign(Presynaptic_ID=frame.Presynaptic_ID + 1).to_parquet(conn, index=False)
    elif how == "zero count":
        frame.assign(Connectivity=0).to_parquet(conn, index=False)
    elif how == "sign mismatch":
        frame.assign(**{"Excitatory x Connectivity": frame["Connectivity"]}).assign(Excitatory=0).to_parquet(
            conn, index=False)
    elif how == "duplicate":
        pd.concat([frame, frame]).to_parquet(conn, index=False)
    elif how == "null":
        frame.assign(Connectivity=[None] + frame.Connectivity.tolist()[1:]).to_parquet(conn, index=False)
    elif how == "missing":
        conn.unlink()
    elif how == "csv":
        conn.unlink()
        frame.to_csv(folder / "Connectivity_tiny.csv", index=False)


@settings(SETTINGS, max_examples=40)
@given(spec=connectome_folder_spec())
@example(spec={"neuron_list": "zero", "connections": "good"})
def test_connectome_files_run_or_are_refused(spec):
    folder = fresh_dir()
    try:
        make_connectome(folder / "data", spec)
        out = folder / "o.parquet"
        code, line = assert_runs_or_refused(
            ["run", "--data", str(folder / "data"), "--stimulate=11,22@200", "--t-run=0.005", "--out", str(out),
             "-q"], out, "neuron list", "connection list", "connectome", "data folder", "Completeness",
            "Connectivity")
        if spec == {"neuron_list": "good", "connections": "good"}:
            assert code == 0
        elif spec["neuron_list"] not in ("good", "missing") or spec["connections"] not in ("good", "duplicate"):
            assert code == 2, f"{spec} was not refused"  # nothing bad runs silently
    finally:
        shutil.rmtree(folder)


@pytest.mark.parametrize("text,needle", [
    ("trial,flywire_id,step\n4294967296,{id},3\n", "trial 4294967296 is out of range"),  # int32 would wrap it to 0
    ("trial,flywire_id,step\n-1,{id},3\n", "trial -1"),
    ("trial,flywire_id,step\n0,{id},-2\n", "step -2 is negative"),
    ("trial,flywire_id,step\n0,{id},1000000000000\n", "steps must lie in 0..49"),
    ("trial,flywire_id,step\n0,{id},1.5\n", "'step' must hold whole numbers"),
    ("trial,flywire_id,step\n0,{id},\n", "'step' is empty in row 1"),
    ("trial,flywire_id,step\nx,{id},3\n", "'trial' must hold whole numbers"),
    ("trial,flywire_id\n0,{id}\n", "missing column(s) ['step']"),
    ("trial,flywire_id,step\n", "holds no kicks"),
    ("trial,flywire_id,step\n0,720575940000000001,3\n", "720575940000000001"),
    ("trial,flywire_id,step\n0,{id},3\n1,{id},3\n", "n_trials = 1"),
])
def test_each_bad_schedule_is_named(net_folder, some_ids, tmp_path, text, needle):
    sched = tmp_path / "kicks.csv"
    sched.write_text(text.format(id=some_ids[0]))
    out = tmp_path / "o.parquet"
    code, line = assert_runs_or_refused(["run", "--data", str(net_folder), "--input-schedule", str(sched),
                                         "--t-run=0.005", "--out", str(out), "-q"], out, str(sched))
    assert code == 2 and needle in line, line
