"""The shipped screen examples run on the synthetic brain (reduced in size) and give reports."""

from __future__ import annotations

from pathlib import Path
import tomllib

import numpy as np
import pytest
from scipy import stats

from brainfly.report import write_report
from brainfly.screens import Screen, screen

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def _reduced(name: str, **changes) -> Screen:
    d = tomllib.loads((EXAMPLES / name).read_text(encoding="utf-8"))
    d.update(changes)
    return Screen.from_dict(d, source=name, root=EXAMPLES)


@pytest.fixture(scope="module")
def synthetic():
    from brainfly.connectome import load_connectome

    return load_connectome("synthetic", progress=False)


def test_sugar_rate_sweep_example(synthetic, tmp_path):
    sc = _reduced("sugar_rate_sweep.toml", n_trials=3, t_run=0.5)
    res = screen(sc, synthetic, out=tmp_path / "sweep", scheduler="in-process", progress=False)
    assert res.complete and len(res.conditions) == 1 + 9
    rates = res.conditions[["condition_id", "rate_hz"]].merge(res.readout, on="condition_id")
    rates = rates[rates["condition_id"] > 0]
    for fid, one in rates.groupby("flywire_id"):  # each MN9: its rate grows with the GRNs' rate
        one = one.sort_values("rate_hz")
        assert one["mean_hz"].iloc[0] == 0.0 and one["mean_hz"].iloc[-1] > 20.0, fid
        assert stats.spearmanr(one["rate_hz"], one["mean_hz"]).statistic > 0.9, fid
    page = write_report(tmp_path / "sweep", tmp_path / "sweep.html")
    html = page.read_text(encoding="utf-8")
    assert "SYNTHETIC" in html and "Rate sweep" in html and html.count("data:image/png;base64") >= 2


def test_sugar_mn9_silencing_example(synthetic, tmp_path):
    d = tomllib.loads((EXAMPLES / "sugar_mn9_silencing.toml").read_text(encoding="utf-8"))
    d["vary"][0]["select"]["limit"] = 8
    d.update(n_trials=3, t_run=0.5)
    sc = Screen.from_dict(d, source="sugar_mn9_silencing.toml", root=EXAMPLES)
    res = screen(sc, synthetic, out=tmp_path / "silencing", scheduler="in-process", progress=False)
    assert res.complete and len(res.conditions) == 1 + 8
    silenced = [int(t.split()[-1]) for t in res.conditions["silence_target"].iloc[1:]]
    base = res.readout[res.readout["condition_id"] == 0]
    assert (base["mean_hz"] > 0).all()  # the sugar base drives MN9
    # the selection: active in the base, within two synapses upstream of MN9, neither MN9 nor a GRN
    mn9 = set(base["flywire_id"].tolist())
    stimulated = set(int(i) for s in sc.base.stimuli for i in s.neurons if not isinstance(i, str))
    assert not (set(silenced) & (mn9 | stimulated))
    idx = synthetic.idx_of(silenced)
    onto = np.isin(synthetic.post_idx, synthetic.idx_of(sorted(mn9)))
    one_hop = set(np.unique(synthetic.pre_idx[onto]).tolist())
    two_hop = set(np.unique(synthetic.pre_idx[np.isin(synthetic.post_idx, sorted(one_hop))]).tolist())
    assert set(idx.tolist()) <= one_hop | two_hop
    assert len(res.effects) == 8 * len(mn9) and res.effects["q_value"].notna().all()
    html = write_report(tmp_path / "silencing", tmp_path / "silencing.html").read_text(encoding="utf-8")
    assert "SYNTHETIC" in html and "Effects" in html
