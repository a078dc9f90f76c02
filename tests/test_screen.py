"""Screens: the spec and its refusals, the conditions, the tables against direct runs and the
statistics module, chunking, Dask (embedded and a real two-worker cluster), resume after a
kill, shuffled controls, dask-jobqueue, and the command."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from pandas.testing import assert_frame_equal

import brainfly
from brainfly import cli
from brainfly.connectome import Connectome, load_connectome
from brainfly.connectome.shuffle import shuffled_connectome
from brainfly.connectome.synthetic import write_synthetic
from brainfly.effects import effect_table, q_values
from brainfly.errors import UnknownNeuronError, ValidationError
from brainfly.experiment import Experiment, StimulusSet
from brainfly.metrics import rate_matrix
from brainfly.screens import Screen, ScreenResult, Vary, load_screen, screen
from brainfly.screens import cluster
from brainfly.testing.networks import random_network

HERE = Path(__file__).parent
DASK = Path(sys.executable).parent / "dask"

# the network: 40 neurons, 1000..1004 driveable (no inputs), the rest fed forward from lower IDs
STIM = (1000, 1001, 1002)          # driven by the base; 1003 and 1004 get no input: 0 Hz
READOUT = [1003, 1015, 1020, 1025, 1030, 1039]
SILENCE = [1006, 1008, 1010, 1012]
BASE_EXP = Experiment(name="drive", stimuli=(StimulusSet(STIM, 150.0, label="drv"),), t_run=0.1, n_trials=5,
                      seed=7)


def _net() -> Connectome:
    return random_network(40, 5, seed=3)[0]


def _annotated() -> Connectome:
    """The same network with cell types: DRV (1000-1004), MID (1005-1019), OUT (1020-1039)."""
    net = _net()
    types = ["DRV"] * 5 + ["MID"] * 15 + ["OUT"] * 20
    ann = pd.DataFrame({"cell_type": types}, index=pd.Index(net.flywire_ids, name="flywire_id"))
    return Connectome(net.flywire_ids, net.indptr, net.post_idx, net.weight, name=net.name, synthetic=True,
                      annotations=ann)


def _screen(**kw) -> Screen:
    args = dict(base=BASE_EXP, readout=READOUT, vary=[{"kind": "silence", "neurons": SILENCE}], name="sil")
    args.update(kw)
    return Screen(**args)


def _run(spec, out, **kw) -> ScreenResult:
    args = dict(data=_net(), engine="event", out=out, scheduler="in-process", progress=False)
    args.update(kw)
    return screen(spec, **args)


def _trials(result, condition_id: int, connectome: str = "real") -> np.ndarray:
    """(n_trials, n_readout) rates of one condition from readout_trials.parquet, columns by flywire_id."""
    rt = pd.read_parquet(result.folder / "readout_trials.parquet")
    block = rt[(rt.condition_id == condition_id) & (rt.connectome == connectome)]
    return block.pivot(index="trial", columns="flywire_id", values="rate_hz").sort_index(axis=1).to_numpy()


def _no_timing(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.drop(columns=[c for c in ("sim_s",) if c in frame])


def _same_tables(a: ScreenResult, b: ScreenResult) -> None:
    assert_frame_equal(a.conditions, b.conditions)
    assert_frame_equal(a.readout, b.readout)
    assert_frame_equal(_no_timing(a.summary), _no_timing(b.summary))
    assert_frame_equal(a.effects, b.effects)
    assert_frame_equal(pd.read_parquet(a.folder / "readout_trials.parquet"),
                       pd.read_parquet(b.folder / "readout_trials.parquet"))


# =============================================================================== the spec
ISSUE_TOML = """\
t_run = 0.1
n_trials = 3
seed = 11
readout = [1020, "1030"]
[base]
name = "drive"
t_run = 0.05
[[base.stimuli]]
neurons = [1000, 1001, 1002]
rate_hz = 150.0
label = "drv"
[[vary]]
kind = "silence"
neurons = [1010, 1012]
[[vary]]
kind = "rate"
values = [50, 100, 150]
[controls]
shuffles = 2
"""


def test_load_screen_reads_the_issue_example_shape(tmp_path):
    path = tmp_path / "sugar-silencing.toml"
    path.write_text(ISSUE_TOML)
    sc = load_screen(path)
    assert sc.name == "sugar-silencing"  # from the file name
    assert isinstance(sc.base, Experiment)
    # the screen's t_run, n_trials and seed override the base's
    assert (sc.base.t_run, sc.base.n_trials, sc.base.seed) == (0.1, 3, 11)
    assert sc.base.stimuli[0].neurons == STIM and sc.base.stimuli[0].label == "drv"
    assert sc.readout == (1020, "1030")
    assert [v.kind for v in sc.vary] == ["silence", "rate"]
    assert sc.vary[0].neurons == (1010, 1012) and sc.vary[1].values == (50.0, 100.0, 150.0)
    assert sc.controls.shuffles == 2
    assert sc.n_conditions_hint == 1 + 2 * 3
    assert sc.readout_ids(_net()).tolist() == [1020, 1030]
    conds = sc.conditions(_net())
    assert len(conds) == 7 and [c.condition_id for c in conds] == list(range(7))
    assert {c.kind for c in conds[1:]} == {"silence+rate"}
    # a name in the file wins over the file name; the same spec gives the same digest
    path.write_text('name = "given"\n' + ISSUE_TOML)
    again = load_screen(path)
    assert again.name == "given" and again.digest != sc.digest
    assert load_screen(path).digest == again.digest


def test_a_builtin_base_loads_and_is_refused_on_a_network_without_its_neurons(tmp_path):
    path = tmp_path / "s.toml"
    path.write_text('base = "sugar"\nreadout = ["MN9"]\nn_trials = 2\nt_run = 0.05\n'
                    '[[vary]]\nkind = "rate"\nvalues = [50, 100]\n')
    sc = load_screen(path)
    assert sc.base.stimuli and sc.base.n_trials == 2
    out = tmp_path / "out"
    with pytest.raises(UnknownNeuronError):
        _run(path, out)
    assert not out.exists()


def _spec(**changes):
    """The plain-dict form of a small spec (what a TOML file parses to)."""
    d = {"name": "bad", "base": BASE_EXP.to_dict(), "readout": [1020],
         "vary": [{"kind": "silence", "neurons": [1010]}]}
    d.update(changes)
    return d


@pytest.mark.parametrize("changes, error, needles", [
    ({"vary": [{"kind": "silense", "neurons": [1010]}]}, ValidationError, ["unknown kind", "silence"]),
    ({"vary": [{"kind": "silence", "neurons": [1010], "grup": True}]}, ValidationError,
     ["unknown key", "grup", "group"]),
    ({"readouts": [1020]}, ValidationError, ["unknown key", "readouts"]),
    ({"vary": [{"kind": "silence", "neurons": []}]}, ValidationError, ["non-empty"]),
    ({"vary": [{"kind": "activate", "neurons": [1010], "rate_hz": 0}]}, ValidationError, ["rate_hz"]),
    ({"vary": [{"kind": "rate", "values": [50, -1]}]}, ValidationError, [">= 0"]),
    ({"vary": [{"kind": "rate", "values": [50], "set": 3}]}, ValidationError, ["out of range"]),
    ({"vary": [{"kind": "rate", "values": [50], "set": "nope"}]}, ValidationError, ["nope", "drv"]),
    ({"vary": [{"kind": "param", "name": "w_sin", "values": [0.2]}]}, ValidationError,
     ["unknown model parameter", "w_syn"]),
    ({"vary": [{"kind": "silence", "neurons": [1010, 4242]}]}, UnknownNeuronError, ["4242"]),
    ({"readout": ["type:NOPE"]}, UnknownNeuronError, ["NOPE"]),
    ({"vary": [{"kind": "silence", "neurons": [1010, 1001]}]}, ValidationError,
     ["condition 2", "silence 1001", "stimulated and silenced"]),
    ({"controls": {"shuffle": 1}}, ValidationError, ["shuffles"]),
    ({"max_conditions": 1}, ValidationError, ["max_conditions", "yes"]),
])
def test_bad_specs_are_refused_before_any_work(tmp_path, changes, error, needles):
    out = tmp_path / "out"
    with pytest.raises(error) as info:
        _run(_spec(**changes), out)
    for needle in needles:
        assert needle in str(info.value), (needle, str(info.value))
    assert not out.exists()


def test_a_rate_sweep_needs_poisson_stimuli_in_the_base(tmp_path):
    scheduled = Experiment(name="sched", input_schedule=str(tmp_path / "k.parquet"), t_run=0.05)
    with pytest.raises(ValidationError, match="rate"):
        Screen(base=scheduled, readout=[1020], vary=[{"kind": "rate", "values": [10]}])
    with pytest.raises(ValidationError, match="activate"):
        Screen(base=scheduled, readout=[1020], vary=[{"kind": "activate", "neurons": [1010]}])
    # silencing a scheduled base is fine
    assert len(Screen(base=scheduled, readout=[1020], vary=[{"kind": "silence", "neurons": [1010]}]).vary) == 1


def test_a_zero_rate_condition_runs_or_is_refused_by_name():
    sc = Screen(base=BASE_EXP, readout=[1020], vary=[{"kind": "rate", "values": [0, 50]}], name="zero")
    try:
        conds = sc.conditions(_net())
    except ValidationError as exc:
        assert "condition 1" in str(exc) and "rate 0 Hz" in str(exc), str(exc)
    else:
        assert conds[1].columns["rate_hz"] == 0.0


def test_param_names_take_short_forms():
    assert Vary(kind="param", name="w_syn", values=[0.2]).name == "w_syn_mv"
    assert Vary(kind="param", name="w_syn_mv", values=[0.2]).name == "w_syn_mv"
    with pytest.raises(ValidationError, match="unknown model parameter"):
        Vary(kind="param", name="w", values=[0.2])


def test_more_conditions_than_max_need_yes_and_controls_count(tmp_path):
    spec = _screen(max_conditions=4, vary=[{"kind": "silence", "neurons": [1010, 1012]}],
                   controls={"shuffles": 1})  # 3 conditions x 2 connectomes = 6 > 4
    out = tmp_path / "out"
    with pytest.raises(ValidationError, match="6 conditions"):
        _run(spec, out)
    assert not out.exists()
    res = _run(spec, out, yes=True)
    assert res.complete and len(res.conditions) == 6


# =============================================================================== conditions
def test_silence_one_condition_per_neuron_or_a_group_as_one():
    net = _annotated()
    mid = list(range(1005, 1020))
    sc = Screen(base=BASE_EXP, readout=["type:OUT"], vary=[{"kind": "silence", "neurons": [1010, "type:MID"]}])
    conds = sc.conditions(net)
    assert len(conds) == 1 + 1 + len(mid)
    assert sc.readout_ids(net).tolist() == list(range(1020, 1040))
    assert [c.experiment.silenced for c in conds[1:]] == [(1010,)] + [(i,) for i in mid]
    for c, fid in zip(conds[2:], mid):
        assert c.kind == "silence" and str(fid) in c.label and str(fid) in c.columns["silence_target"]
    grouped = Screen(base=BASE_EXP, readout=["type:OUT"],
                     vary=[{"kind": "silence", "neurons": [1010, "type:MID"], "group": True}]).conditions(net)
    assert len(grouped) == 3
    assert grouped[2].experiment.silenced == tuple(mid)
    assert grouped[2].columns["silence_target"] == "type:MID" and grouped[2].label == "silence type:MID"


def test_activate_alone_or_on_top_of_the_base():
    alone = Screen(base=BASE_EXP, readout=[1020],
                   vary=[{"kind": "activate", "neurons": [1003], "rate_hz": 80}]).conditions(_net())
    assert len(alone) == 2
    stim = alone[1].experiment.stimuli
    assert [(s.neurons, s.rate_hz) for s in stim] == [((1003,), 80.0)]
    assert alone[1].columns["activate_target"] == "1003" and alone[1].kind == "activate"
    on_top = Screen(base=BASE_EXP, readout=[1020],
                    vary=[{"kind": "activate", "neurons": [1003, 1004], "with_base": True}]).conditions(_net())
    assert len(on_top) == 3
    for c, fid in zip(on_top[1:], (1003, 1004)):
        # default rate: the base's first stimulus rate
        assert [(s.neurons, s.rate_hz) for s in c.experiment.stimuli] == [(STIM, 150.0), ((fid,), 150.0)]


def test_rate_sweeps_all_sets_or_the_one_named():
    two = BASE_EXP.with_(stimuli=(StimulusSet(STIM, 150.0, label="a"), StimulusSet((1003,), 90.0, label="b")))
    every = Screen(base=two, readout=[1020], vary=[{"kind": "rate", "values": [20, 40, 60]}]).conditions(_net())
    assert [c.columns["rate_hz"] for c in every[1:]] == [20.0, 40.0, 60.0]
    assert [[s.rate_hz for s in c.experiment.stimuli] for c in every[1:]] == [[20, 20], [40, 40], [60, 60]]
    assert np.isnan(every[0].columns["rate_hz"])
    for key in ("b", 1):
        one = Screen(base=two, readout=[1020], vary=[{"kind": "rate", "values": [20, 40], "set": key}]).conditions(
            _net())
        assert [[s.rate_hz for s in c.experiment.stimuli] for c in one] == [[150, 90], [150, 20], [150, 40]]
        assert [c.label for c in one[1:]] == ["rate 20 Hz", "rate 40 Hz"]


def test_param_conditions_change_the_named_parameter_only():
    conds = Screen(base=BASE_EXP, readout=[1020], vary=[{"kind": "param", "name": "w_syn", "values": [0.2, 0.4]}]
                   ).conditions(_net())
    assert len(conds) == 3
    for c, x in zip(conds[1:], (0.2, 0.4)):
        assert c.kind == "param" and c.columns["param"] == "w_syn_mv" and c.columns["param_value"] == x
        assert c.experiment.params.w_syn_mv == x
        changed = {k for k, v in c.experiment.params.to_dict().items() if v != BASE_EXP.params.to_dict()[k]}
        assert changed <= {"w_syn_mv"}


def test_two_vary_tables_give_their_product_base_first_same_seed():
    sc = Screen(base=BASE_EXP, readout=[1020], seed=21,
                vary=[{"kind": "silence", "neurons": [1010, 1012]}, {"kind": "rate", "values": [50, 100]}])
    conds = sc.conditions(_net())
    assert len(conds) == 5
    base = conds[0]
    assert (base.condition_id, base.kind, base.label) == (0, "base", "base")
    assert base.columns["silence_target"] == "" and np.isnan(base.columns["rate_hz"])
    assert base.experiment.silenced == () and base.experiment.stimuli[0].rate_hz == 150.0
    got = [(c.experiment.silenced, c.experiment.stimuli[0].rate_hz) for c in conds[1:]]
    assert got == [((1010,), 50.0), ((1010,), 100.0), ((1012,), 50.0), ((1012,), 100.0)]
    assert all(c.kind == "silence+rate" for c in conds[1:])
    assert conds[1].label == "silence 1010; rate 50 Hz"
    assert conds[4].columns["silence_target"] == "1012" and conds[4].columns["rate_hz"] == 100.0
    # every condition keeps the base's seed (and its duration and trials)
    assert {(c.experiment.seed, c.experiment.t_run, c.experiment.n_trials) for c in conds} == {(21, 0.1, 5)}


def _upstream(net: Connectome, target: int, max_hops: int) -> dict[int, int]:
    """FlyWire ID -> hops of every neuron with a path of at most *max_hops* onto *target* (a plain BFS)."""
    pre, post = net.pre_idx.tolist(), net.post_idx.tolist()
    t = int(net.idx_of([target])[0])
    hops, frontier = {t: 0}, {t}
    for h in range(1, max_hops + 1):
        frontier = {i for i, j in zip(pre, post) if j in frontier and i not in hops}
        hops.update((i, h) for i in frontier)
    del hops[t]
    return {int(net.flywire_ids[i]): h for i, h in hops.items()}


def test_a_selection_silences_the_neurons_upstream_of_a_target_nearest_first():
    net = _net()
    sc = Screen(base=BASE_EXP, readout=[1030],
                vary=[{"kind": "silence", "select": {"upstream_of": [1030], "max_hops": 2}}])
    assert sc.needs_base_run
    up = {i: h for i, h in _upstream(net, 1030, 2).items() if i not in STIM}
    assert any(h == 2 for h in up.values()) and any(h == 1 for h in up.values())
    conds = sc.conditions(net)
    assert [c.experiment.silenced for c in conds[1:]] == [(i,) for i in sorted(up, key=lambda i: (up[i], i))]
    grouped = Screen(base=BASE_EXP, readout=[1030], vary=[{"kind": "silence", "group": True, "select": {
        "upstream_of": [1030], "max_hops": 1}}]).conditions(net)
    assert len(grouped) == 2
    assert set(grouped[1].experiment.silenced) == {i for i, h in up.items() if h == 1}


def test_a_selection_of_the_most_active_upstream_neurons_uses_the_base_run(tmp_path):
    net = _net()
    spec = _screen(vary=[{"kind": "silence", "select": {"upstream_of": [1030], "max_hops": 2,
                                                        "active_in_base": True, "limit": 3}}])
    res = _run(spec, tmp_path / "out")
    base = brainfly.run(BASE_EXP, data=net, engine="event", progress=False)
    counts = dict(zip(*np.unique(net.flywire_ids[base.idx], return_counts=True)))
    up = {i: h for i, h in _upstream(net, 1030, 2).items() if i not in STIM and counts.get(i, 0) > 0}
    want = sorted(up, key=lambda i: (-counts[i], up[i], i))[:3]
    assert len(want) == 3
    got = [json.loads(e)["silenced"] for e in res.conditions.experiment[1:]]
    assert got == [[i] for i in want]
    assert "base_for_selection_s" in res.info["timings"]


# =============================================================================== running
@pytest.fixture(scope="module")
def ran(tmp_path_factory) -> ScreenResult:
    """The silencing screen, in process, default chunks."""
    return _run(_screen(), tmp_path_factory.mktemp("screen") / "out")


def _check_columns(frame: pd.DataFrame, kinds: dict[str, str]) -> None:
    cols = [c for c in frame.columns if c in kinds]
    assert cols == list(kinds), f"columns {list(frame.columns)} lack or reorder {list(kinds)}"
    for col, kind in kinds.items():
        check = {"int": lambda s: s.dtype == np.int64, "float": pd.api.types.is_float_dtype,
                 "str": pd.api.types.is_string_dtype, "bool": pd.api.types.is_bool_dtype}[kind]
        assert check(frame[col]), (col, frame[col].dtype)
        if kind == "float":
            assert frame[col].dtype == np.float64, col


def test_the_folder_follows_the_contract(ran):
    folder = ran.folder
    info = json.loads((folder / "screen.json").read_text())
    for key in ("name", "spec", "status", "engine", "engine_options", "data", "n_conditions", "timings",
                "brainfly_version", "hardware"):
        assert key in info, key
    assert info["status"] == "complete" and info["name"] == "sil" and info["engine"] == "event"
    assert info["n_conditions"] == 5 and info["data"]["synthetic"] is True
    assert info["data"]["digest"] == _net().content_digest and info["data"]["name"] == _net().name
    assert info["spec"]["base"]["seed"] == 7
    key = ["condition_id", "connectome"]
    conditions = pd.read_parquet(folder / "conditions.parquet")
    _check_columns(conditions, {"condition_id": "int", "connectome": "str", "kind": "str", "label": "str",
                                "silence_target": "str", "activate_target": "str", "rate_hz": "float",
                                "param": "str", "param_value": "float", "experiment": "str"})
    assert conditions.condition_id.tolist() == list(range(5)) and set(conditions.connectome) == {"real"}
    assert conditions.kind.tolist() == ["base"] + ["silence"] * 4
    assert conditions.silence_target.tolist() == [""] + [str(i) for i in SILENCE]
    assert [json.loads(e)["silenced"] for e in conditions.experiment] == [[]] + [[i] for i in SILENCE]
    readout = pd.read_parquet(folder / "readout.parquet")
    _check_columns(readout, {"condition_id": "int", "connectome": "str", "flywire_id": "int", "name": "str",
                             "cell_type": "str", "mean_hz": "float", "std_hz": "float", "sem_hz": "float",
                             "n_trials": "int"})
    # every condition x every readout neuron, the silent one included (0 Hz)
    assert len(readout) == 5 * len(READOUT)
    assert sorted(readout.flywire_id.unique()) == READOUT
    silent = readout[readout.flywire_id == 1003]
    assert (silent.mean_hz == 0).all() and (silent.std_hz == 0).all() and (readout.n_trials == 5).all()
    trials = pd.read_parquet(folder / "readout_trials.parquet")
    _check_columns(trials, {"condition_id": "int", "connectome": "str", "flywire_id": "int", "trial": "int",
                            "rate_hz": "float"})
    assert len(trials) == 5 * len(READOUT) * 5 and sorted(trials.trial.unique()) == list(range(5))
    summary = pd.read_parquet(folder / "summary.parquet")
    _check_columns(summary, {"condition_id": "int", "connectome": "str", "n_spikes": "int",
                             "spikes_per_trial_s": "float", "n_active": "int", "runaway": "bool", "sim_s": "float"})
    assert len(summary) == 5 and not summary.runaway.any()
    assert np.allclose(summary.spikes_per_trial_s, summary.n_spikes / (5 * 0.1))
    effects = pd.read_parquet(folder / "effects.parquet")
    _check_columns(effects, {"condition_id": "int", "connectome": "str", "flywire_id": "int", "name": "str",
                             "cell_type": "str", "base_mean_hz": "float", "mean_hz": "float", "diff_hz": "float",
                             "ci_low_hz": "float", "ci_high_hz": "float", "effect_size": "float", "t": "float",
                             "p_value": "float", "q_value": "float"})
    assert 0 not in set(effects.condition_id) and len(effects) == 4 * len(READOUT)
    # the result object holds the same tables as the files
    assert_frame_equal(ran.conditions, conditions)
    assert_frame_equal(ran.readout, readout)
    assert_frame_equal(ran.effects, effects)
    assert ran.readout[key].drop_duplicates().shape[0] == 5
    assert not list(folder.glob("**/*.tmp*"))


def test_conditions_equal_direct_runs_spike_for_spike(ran):
    net = _net()
    ids = np.array(READOUT, dtype=np.int64)
    summary = ran.summary.set_index("condition_id")
    direct = {}
    for cid, silenced in enumerate([()] + [(i,) for i in SILENCE]):
        # built here, not from the screen's records (another name: names do not change the draws)
        exp = BASE_EXP.with_(silenced=silenced, name=f"direct-{cid}")
        res = brainfly.run(exp, data=net, engine="event", progress=False)
        _, rates = rate_matrix(res, ids)
        direct[cid] = rates
        np.testing.assert_array_equal(_trials(ran, cid), rates)
        np.testing.assert_array_equal(ran.readout[ran.readout.condition_id == cid].mean_hz, rates.mean(axis=0))
        assert summary.loc[cid, "n_spikes"] == res.n_spikes
        assert summary.loc[cid, "n_active"] == res.n_active
    # silencing did something (else this test would prove little)
    assert summary.n_spikes.nunique() > 1
    # effects: the statistics module on base vs condition, q over all pairs of the connectome
    eff = ran.effects.sort_values(["condition_id", "flywire_id"]).reset_index(drop=True)
    expected = [effect_table(direct[0], direct[c]) for c in range(1, 5)]
    for col, src in (("base_mean_hz", "mean_a_hz"), ("mean_hz", "mean_b_hz"), ("diff_hz", "diff_hz"),
                     ("ci_low_hz", "ci_low_hz"), ("ci_high_hz", "ci_high_hz"), ("effect_size", "effect_size"),
                     ("t", "t"), ("p_value", "p_value")):
        np.testing.assert_allclose(eff[col], np.concatenate([e[src] for e in expected]), rtol=1e-12, err_msg=col)
    q = q_values(np.concatenate([e["p_value"] for e in expected]))
    np.testing.assert_allclose(eff.q_value, q, rtol=1e-12)
    assert (eff.q_value < 0.05).any()  # some readout changed surely
    assert eff.condition_id.tolist() == np.repeat(np.arange(1, 5), len(READOUT)).tolist()
    # the strongest effects first
    top = ran.top(3)
    assert len(top) == 3 and "label" in top and top.q_value.is_monotonic_increasing


def test_chunking_does_not_change_the_numbers(ran, tmp_path):
    one = _run(_screen(), tmp_path / "one", chunk_conditions=1)
    assert one.info["timings"]["chunks_run"] == 5 and ran.info["timings"]["chunks_run"] == 1
    _same_tables(ran, one)


def test_embedded_dask_gives_the_same_numbers(ran, tmp_path):
    local = _run(_screen(), tmp_path / "local", scheduler="local", chunk_conditions=2)
    assert local.info["scheduler"]["scheduler"] == "dask embedded"
    assert local.info["timings"]["chunks_run"] == 3
    _same_tables(ran, local)


def test_saved_spikes_are_each_conditions_run(tmp_path):
    res = _run(_screen(vary=[{"kind": "silence", "neurons": [1006]}]), tmp_path / "out", save_spikes=True)
    files = sorted(p.name for p in (res.folder / "spikes").iterdir())
    assert files == ["real-condition-000000.parquet", "real-condition-000001.parquet"]
    saved = brainfly.SpikeResult.read_parquet(res.folder / "spikes" / files[1], _net().flywire_ids)
    direct = brainfly.run(BASE_EXP.with_(silenced=(1006,)), data=_net(), engine="event", progress=False)
    assert saved.n_spikes == direct.n_spikes > 0
    for col in ("trial", "idx", "step"):
        np.testing.assert_array_equal(getattr(saved, col), getattr(direct, col))
    # spikes are part of what the folder holds: a run without them is another screen
    with pytest.raises(ValidationError, match="holds another screen"):
        _run(_screen(vary=[{"kind": "silence", "neurons": [1006]}]), tmp_path / "out")


def test_a_bad_scheduler_is_refused_before_the_folder_is_written(tmp_path):
    out = tmp_path / "out"
    with pytest.raises(ValidationError, match="not a scheduler address"):
        _run(_screen(), out, scheduler="slrum")
    assert not out.exists()


# =============================================================================== a real Dask cluster
def _stop(procs: list[subprocess.Popen]) -> None:
    """Workers first (they close while their scheduler still answers), then the scheduler."""
    for p in reversed(procs):
        if p.poll() is None:
            p.terminate()
        try:
            p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(timeout=10)


@pytest.fixture(scope="module")
def dask_cluster(tmp_path_factory):
    """A scheduler and two single-thread workers on 127.0.0.1, each its own process."""
    distributed = pytest.importorskip("distributed")
    if not DASK.is_file():
        pytest.skip(f"no dask command at {DASK}")
    folder = tmp_path_factory.mktemp("dask")
    sched_file = folder / "scheduler.json"
    procs: list[subprocess.Popen] = []

    def start(args: list[str], log: str) -> None:
        with open(folder / log, "wb") as fh:
            procs.append(subprocess.Popen([str(DASK), *args], stdout=fh, stderr=subprocess.STDOUT,
                                          stdin=subprocess.DEVNULL, cwd=folder))

    try:
        start(["scheduler", "--host", "127.0.0.1", "--port", "0", "--scheduler-file", str(sched_file),
               "--no-dashboard"], "scheduler.log")
        deadline = time.monotonic() + 60
        while not sched_file.is_file():
            assert procs[0].poll() is None, (folder / "scheduler.log").read_text()
            assert time.monotonic() < deadline, "the Dask scheduler did not start"
            time.sleep(0.1)
        for k in range(2):
            start(["worker", "--scheduler-file", str(sched_file), "--nthreads", "1", "--no-dashboard",
                   "--no-nanny", "--death-timeout", "60"], f"worker-{k}.log")
        address = json.loads(sched_file.read_text())["address"]
        with distributed.Client(address, timeout="30s") as client:
            client.wait_for_workers(2, timeout=90)
        yield address
    finally:
        _stop(procs)


def _worker_networks(address: str) -> dict[str, list[str]]:
    """The connectome digests each worker keeps in memory."""
    import distributed

    with distributed.Client(address, timeout="30s") as client:
        return client.run(lambda: sorted(__import__("brainfly.screens.cluster", fromlist=["_NETWORKS"])._NETWORKS))


def test_a_two_worker_cluster_gives_the_in_process_numbers(dask_cluster, ran, tmp_path):
    net = _net()
    # (a) a loaded Connectome: scattered to both workers
    remote = _run(_screen(), tmp_path / "remote", data=net, scheduler=dask_cluster, chunk_conditions=1)
    assert remote.info["scheduler"] == {"scheduler": f"dask {dask_cluster}", "n_workers": 2}
    assert remote.info["timings"]["chunks_run"] == 5
    _same_tables(ran, remote)
    held = _worker_networks(dask_cluster)
    assert len(held) == 2 and all(net.content_digest in v for v in held.values()), held
    # (b) a folder the workers load themselves (checked against the client's digest)
    data = write_synthetic(net, tmp_path / "net")
    here = _run(_screen(), tmp_path / "here", data=str(data))
    there = _run(_screen(), tmp_path / "there", data=str(data), scheduler=dask_cluster, chunk_conditions=1)
    _same_tables(here, there)
    assert_frame_equal(ran.readout, there.readout)  # the files hold the same network
    digest = load_connectome(data, progress=False).content_digest
    assert there.info["data"]["digest"] == digest
    held = _worker_networks(dask_cluster)
    assert any(digest in v for v in held.values()), held


# =============================================================================== resume
def _resume_spec(tmp_path: Path) -> Path:
    path = tmp_path / "resume.toml"
    base = BASE_EXP.to_dict()
    base.pop("input_schedule")
    lines = ['name = "resume"', f"readout = {READOUT}", "[base]"]
    lines += [f"{k} = {json.dumps(v)}" for k, v in base.items() if k not in ("stimuli", "params", "silenced")]
    lines += ["[[base.stimuli]]", f"neurons = {list(STIM)}", "rate_hz = 150.0", 'label = "drv"',
              "[[vary]]", 'kind = "silence"', f"neurons = {list(range(1005, 1015))}"]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_a_killed_screen_resumes_with_the_missing_chunks_only(tmp_path, monkeypatch):
    spec = _resume_spec(tmp_path)
    assert len(load_screen(spec).conditions(_net())) == 11
    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, str(HERE / "_screen_kill.py"), str(spec), str(out), "0.4"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 90
        while len(list(out.glob("parts/*/chunk-*-summary.parquet"))) < 2:
            assert proc.poll() is None, f"the screen ended before it was killed: {proc.stdout.read()!r}"
            assert time.monotonic() < deadline, "no chunk finished in time"
            time.sleep(0.02)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)
        proc.stdout.close()
    assert proc.returncode == -signal.SIGKILL
    assert json.loads((out / "screen.json").read_text())["status"] == "running"
    finished = len(list(out.glob("parts/*/chunk-*-summary.parquet")))
    assert 2 <= finished < 11
    # again, in process, without naming the chunk size: the folder's (1 per chunk) is kept
    resumed = screen(spec, data=_net(), out=out, scheduler="in-process", progress=False)
    assert resumed.complete
    assert resumed.info["chunk_conditions"] == 1
    assert resumed.info["timings"]["chunks_run"] == 11 - finished
    clean = screen(spec, data=_net(), out=tmp_path / "clean", scheduler="in-process", progress=False)
    assert clean.info["timings"]["chunks_run"] == 1
    _same_tables(clean, resumed)

    # a complete screen run again: read back, nothing runs
    def no_work(*args, **kwargs):
        raise AssertionError("a chunk ran again")

    monkeypatch.setattr(cluster, "run_chunk", no_work)
    again = screen(spec, data=_net(), out=out, scheduler="in-process", progress=False)
    assert again.info == resumed.info
    _same_tables(resumed, again)
    # without resuming, a complete folder is refused unless overwritten
    with pytest.raises(ValidationError, match="complete"):
        screen(spec, data=_net(), out=out, scheduler="in-process", progress=False, resume=False)


def test_a_folder_of_another_screen_is_refused_without_overwrite(ran, tmp_path):
    out = tmp_path / "out"
    _run(_screen(vary=[{"kind": "silence", "neurons": [1010]}]), out)
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()}
    with pytest.raises(ValidationError, match="holds another screen"):
        _run(_screen(), out)
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()} == before
    replaced = _run(_screen(), out, overwrite=True)
    _same_tables(ran, replaced)
    # a folder that is not a screen's is not taken over
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    with pytest.raises(ValidationError, match="not a screen folder"):
        _run(_screen(), other)
    assert [p.name for p in other.iterdir()] == ["notes.txt"]


# =============================================================================== controls
def test_shuffled_controls_run_every_condition_on_each_network(ran, tmp_path):
    res = _run(_screen(vary=[{"kind": "silence", "neurons": [1006, 1010]}], controls={"shuffles": 1}),
               tmp_path / "ctl")
    for name in ("conditions", "readout", "summary", "effects"):
        assert set(getattr(res, name).connectome) == {"real", "shuffle-1"}, name
    assert res.conditions.groupby("connectome").size().to_dict() == {"real": 3, "shuffle-1": 3}
    assert res.info["connectomes"] == ["real", "shuffle-1"]
    # the real network's numbers are those of the screen without controls
    real = res.readout[res.readout.connectome == "real"].reset_index(drop=True)
    assert_frame_equal(real, ran.readout[ran.readout.condition_id.isin([0, 1, 3])].assign(
        condition_id=lambda f: f.condition_id.map({0: 0, 1: 1, 3: 2})).reset_index(drop=True))
    # the control's base is a run on the shuffled network
    shuffled = shuffled_connectome(_net(), 1)
    direct = brainfly.run(BASE_EXP, data=shuffled, engine="event", progress=False)
    np.testing.assert_array_equal(_trials(res, 0, "shuffle-1"), rate_matrix(direct, np.array(READOUT))[1])
    summary = res.summary.set_index(["connectome", "condition_id"])
    assert summary.loc[("shuffle-1", 0), "n_spikes"] == direct.n_spikes
    # q over the pairs of each connectome separately
    for label, block in res.effects.groupby("connectome"):
        np.testing.assert_allclose(block.q_value, q_values(block.p_value.to_numpy()), rtol=1e-12)


def test_shuffled_connectome_keeps_degrees_and_outgoing_weights():
    net = _net()
    a, b, c = shuffled_connectome(net, 1), shuffled_connectome(net, 1), shuffled_connectome(net, 2)
    n = net.n_neurons
    for s in (a, c):
        np.testing.assert_array_equal(s.flywire_ids, net.flywire_ids)
        np.testing.assert_array_equal(s.indptr, net.indptr)  # out-degree
        np.testing.assert_array_equal(np.bincount(s.post_idx, minlength=n), np.bincount(net.post_idx, minlength=n))
        for i in range(n):  # each neuron's outgoing signed weights
            lo, hi = net.indptr[i], net.indptr[i + 1]
            assert sorted(s.weight[lo:hi]) == sorted(net.weight[lo:hi])
        assert s.synthetic == net.synthetic and s.meta["shuffled_from"] == net.content_digest
    np.testing.assert_array_equal(a.post_idx, b.post_idx)
    assert a.content_digest == b.content_digest
    assert not np.array_equal(a.post_idx, net.post_idx)
    assert not np.array_equal(a.post_idx, c.post_idx) and a.content_digest != c.content_digest
    assert a.name != c.name


# =============================================================================== executors
def test_jobqueue_builds_a_slurm_cluster_whose_jobs_run_a_dask_worker():
    pytest.importorskip("dask_jobqueue")
    slurm = cluster.jobqueue_cluster("slurm", jobs=0, cores=1, memory="1GB", processes=1, walltime="00:10:00",
                                     scheduler_options={"host": "127.0.0.1", "dashboard_address": ":0"})
    try:
        assert type(slurm).__name__ == "SLURMCluster"
        script = slurm.job_script()
        assert script.startswith("#!") and "#SBATCH" in script
        assert "distributed.cli.dask_worker" in script or "dask worker" in script or "dask_spec" in script
        assert "--nthreads 1" in script or "nthreads" in script
        assert "00:10:00" in script
        assert len(slurm.workers) == 0  # no job submitted
    finally:
        slurm.close()
    with pytest.raises(ValidationError, match="unknown batch system"):
        cluster.jobqueue_cluster("slurmm")


def test_make_executor_knows_its_schedulers():
    assert isinstance(cluster.make_executor("in-process"), cluster.InProcess)
    with pytest.raises(ValidationError, match="not a scheduler address"):
        cluster.make_executor("nonsense")


# =============================================================================== the command
def test_the_command_runs_a_spec_and_prints_the_summary(tmp_path, capsys):
    data = write_synthetic(_net(), tmp_path / "net")
    spec = _resume_spec(tmp_path)
    out = tmp_path / "out"
    code = cli.main(["screen", str(spec), "--data", str(data), "--out", str(out), "--scheduler", "in-process",
                     "-q"])
    text = capsys.readouterr().out
    assert code == 0, text
    assert "screen 'resume': 11 conditions x 5 trial(s) on event" in text and "SYNTHETIC" in text
    assert str(out) in text and "q < 0.05" in text
    res = ScreenResult.load(out)
    assert res.complete and len(res.conditions) == 11


@pytest.mark.parametrize("text, needle", [
    ('base = "sugar"\nreadout = [1]\n[[vary]]\nkind = "silense"\nneurons = [1]\n', "unknown kind"),
    ("readout = [\n", "not valid TOML"),
])
def test_a_bad_spec_is_one_error_line(tmp_path, capsys, text, needle):
    spec = tmp_path / "bad.toml"
    spec.write_text(text)
    out = tmp_path / "out"
    code = cli.main(["screen", str(spec), "--data", str(tmp_path), "--out", str(out), "--scheduler", "in-process",
                     "-q"])
    captured = capsys.readouterr()
    assert code == 2
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and needle in lines[0], captured.err
    assert not out.exists()


def test_raising_max_conditions_keeps_the_screen_resumable():
    """max_conditions is a safety limit, not part of what the screen computes: the digest
    (the folder's identity, for resuming) ignores it; everything else changes it."""
    a = Screen(base=BASE_EXP, readout=[1020], vary=[{"kind": "rate", "values": [50, 100]}], max_conditions=5)
    b = Screen(base=BASE_EXP, readout=[1020], vary=[{"kind": "rate", "values": [50, 100]}], max_conditions=500)
    c = Screen(base=BASE_EXP, readout=[1020], vary=[{"kind": "rate", "values": [50, 101]}], max_conditions=5)
    assert a.digest == b.digest and a.digest != c.digest


def test_torch_screens_give_the_event_engines_numbers(tmp_path):
    """The torch engine (CPU, float64: exact) runs a screen's chunk as one batch of
    conditions (silencing as per-row masks) and gives the event engine's readout."""
    import pandas as pd

    from brainfly.testing.networks import random_network

    net, driven = random_network(60, 6, seed=2)
    ids = [int(i) for i in net.flywire_ids[driven]]
    base = Experiment(name="b", stimuli=(StimulusSet(tuple(ids), 150.0),), t_run=0.1, n_trials=3, seed=1)
    sc = Screen(base=base, readout=[int(net.flywire_ids[50]), int(net.flywire_ids[55])],
                vary=[{"kind": "silence", "neurons": [int(net.flywire_ids[k]) for k in range(10, 20)]}])
    a = screen(sc, net, engine="event", out=tmp_path / "event", scheduler="in-process", progress=False)
    b = screen(sc, net, engine="torch", out=tmp_path / "torch", scheduler="in-process", progress=False)
    assert b.info["chunk_conditions"] == 16  # torch on CPU: 16 conditions a batch
    pd.testing.assert_frame_equal(a.readout, b.readout)
    pd.testing.assert_frame_equal(a.effects, b.effects)
    assert a.readout["mean_hz"].gt(0).any()
