"""The synthetic connectome generator: determinism, canonical files, structure, statistics."""

from __future__ import annotations

import json
from pathlib import Path
import time

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from brainfly.connectome import synthetic
from brainfly.connectome.lookup import PAPER_ALIASES
from brainfly.connectome.synthetic import (
    SYNTHETIC_FILES,
    SyntheticParams,
    ensure_synthetic,
    find_neuron_list,
    generate_synthetic,
    named_neuron_ids,
    write_synthetic,
)
from brainfly.errors import ValidationError
from brainfly.experiment import SUGAR_GRNS_783, builtin_experiment

REAL_LIST = Path(__file__).resolve().parents[2] / "shared" / "data" / "flywire" / "Completeness_783.csv"
COLUMNS = ["Presynaptic_ID", "Postsynaptic_ID", "Presynaptic_Index", "Postsynaptic_Index",
           "Connectivity", "Excitatory", "Excitatory x Connectivity"]


@pytest.fixture(scope="module")
def small():
    return generate_synthetic(500, seed=1)


@pytest.fixture(scope="module")
def medium():
    return generate_synthetic(5000, seed=3)


def _keys(net):
    return net.pre_idx.astype(np.int64) * net.n_neurons + net.post_idx


def test_small_network_is_fast_and_labelled(small):
    t0 = time.perf_counter()
    net = generate_synthetic(500, seed=1)
    assert time.perf_counter() - t0 < 5
    assert net.n_neurons == 500 and net.synthetic
    assert net.name == "synthetic-v1-seed1"
    assert "SYNTHETIC" in net.label
    assert net.meta["synthetic"] is True and net.meta["seed"] == 1
    assert net.meta["statistics"]["n_connections"] == net.n_connections
    net.validate_arrays()


def test_same_seed_same_arrays_other_seed_differs(small):
    again = generate_synthetic(500, seed=1)
    for a in ("flywire_ids", "indptr", "post_idx", "weight"):
        np.testing.assert_array_equal(getattr(small, a), getattr(again, a))
    other = generate_synthetic(500, seed=2)
    assert not np.array_equal(small.post_idx[:100], other.post_idx[:100])


def test_files_are_byte_identical(small, tmp_path):
    a = write_synthetic(small, tmp_path / "a")
    b = write_synthetic(generate_synthetic(500, seed=1), tmp_path / "b")
    for name in SYNTHETIC_FILES.values():
        assert (a / name).read_bytes() == (b / name).read_bytes(), name
    assert (a / SYNTHETIC_FILES["marker"]).read_bytes() == b""


def test_canonical_schema(small, tmp_path):
    folder = write_synthetic(small, tmp_path)
    csv = folder / "Completeness_synthetic.csv"
    assert csv.read_text().splitlines()[0] == ",Completed"
    neurons = pd.read_csv(csv, index_col=0)
    assert neurons.index.dtype == np.int64 and neurons["Completed"].dtype == bool
    np.testing.assert_array_equal(neurons.index.to_numpy(), small.flywire_ids)
    table = pq.read_table(folder / "Connectivity_synthetic.parquet")
    assert table.column_names == COLUMNS
    assert all(str(t) == "int64" for t in table.schema.types)
    df = table.to_pandas()
    assert len(df) == small.n_connections
    assert (df["Connectivity"] >= 1).all()
    assert set(df["Excitatory"].unique()) <= {0, 1}
    sign = np.where(df["Excitatory"] == 1, 1, -1)
    np.testing.assert_array_equal(df["Excitatory x Connectivity"], sign * df["Connectivity"])
    np.testing.assert_array_equal(df["Presynaptic_ID"], small.flywire_ids[df["Presynaptic_Index"]])
    np.testing.assert_array_equal(df["Postsynaptic_ID"], small.flywire_ids[df["Postsynaptic_Index"]])
    np.testing.assert_array_equal(df["Excitatory x Connectivity"], small.weight.astype(np.int64))
    meta = json.loads((folder / "synthetic.json").read_text())
    assert meta["synthetic"] is True and meta["seed"] == 1 and "params" in meta and "statistics" in meta
    assert meta["files"]["Connectivity_synthetic.parquet"]["bytes"] == (folder / "Connectivity_synthetic.parquet").stat().st_size


def test_no_self_connections_or_duplicate_pairs(medium):
    keys = _keys(medium)
    assert np.unique(keys).shape[0] == keys.shape[0]
    assert not np.any(medium.pre_idx == medium.post_idx)


def test_dale_sign_per_presynaptic_neuron(medium):
    pre = medium.pre_idx
    exc = medium.weight > 0
    n_exc = np.bincount(pre, weights=exc, minlength=medium.n_neurons)
    deg = np.diff(medium.indptr)
    assert np.all((n_exc == 0) | (n_exc == deg))


def test_named_neurons_present_and_builtins_resolve(small):
    for fid in list(SUGAR_GRNS_783) + [i for ids in PAPER_ALIASES.values() for i in ids]:
        assert fid in small
    for name in ("sugar", "p9"):
        builtin_experiment(name).resolve(small)


def test_sugar_pathway_reaches_mn9(small):
    named = named_neuron_ids()
    grn = set(small.idx_of(named["sugar_grns"]).tolist())
    mn9 = small.idx_of(named["MN9"])
    pw = small.meta["pathways"]["sugar_layers_idx"]
    pre, post, w = small.pre_idx, small.post_idx, small.weight
    assert np.any(np.isin(pre, list(grn)) & np.isin(post, pw[0]) & (w >= 3))
    assert np.any(np.isin(pre, pw[-1]) & np.isin(post, mn9) & (w > 0))


def test_core_and_olfactory_inputs_excite(medium):
    pw = medium.meta["pathways"]
    assert len(pw["core_idx"]) >= 2 and len(pw["olfactory_idx"]) >= 2
    pre, post, w = medium.pre_idx, medium.post_idx, medium.weight
    from_olf = np.isin(pre, pw["olfactory_idx"])
    assert np.all(w[from_olf] > 0)
    assert np.any(from_olf & np.isin(post, pw["core_idx"]))
    assert np.all(w[np.isin(pre, pw["core_idx"])] > 0)


def test_degree_and_weight_statistics(medium):
    s = medium.meta["statistics"]
    assert s["n_connections"] == round(5000 * 15_091_983 / 138_639)
    assert 3.2 < s["synapses_per_connection"] < 4.0
    assert s["share_connections_1_2_synapses"] > 0.6
    assert s["synapses"]["p100"] >= 200  # a few connections have hundreds of synapses
    assert 0.30 <= s["inhibitory_share_connections"] <= 0.36
    for deg in ("out_degree", "in_degree"):
        d = s[deg]
        assert d["mean"] == pytest.approx(108.86, rel=0.01)
        assert d["p50"] < d["mean"]  # heavy tail: median below mean
        assert d["p99"] > 4 * d["p50"]
        assert d["p100"] > 10 * d["p50"]


def test_validation_errors():
    with pytest.raises(ValidationError, match="n_neurons"):
        generate_synthetic(50)
    with pytest.raises(ValidationError, match="seed"):
        generate_synthetic(500, seed=-1)
    with pytest.raises(ValidationError, match="named neurons"):
        generate_synthetic(neuron_ids=np.arange(1000, dtype=np.int64))
    with pytest.raises(ValidationError, match="inhibitory_share"):
        SyntheticParams(inhibitory_share=1.5)


def _fake_list(path: Path, n_extra: int = 300) -> np.ndarray:
    named = sorted({i for v in named_neuron_ids().values() for i in v})
    ids = np.array(named + list(range(10**15, 10**15 + n_extra)), dtype=np.int64)[::-1]
    pd.DataFrame({"Completed": True}, index=ids).to_csv(path)
    return ids


def test_neuron_list_ids_are_reused_in_order(tmp_path):
    ids = _fake_list(tmp_path / "Completeness_783.csv")
    net = generate_synthetic(neuron_list=tmp_path / "Completeness_783.csv", seed=0)
    np.testing.assert_array_equal(net.flywire_ids, ids)
    assert "Completeness_783.csv" in net.meta["id_source"]
    with pytest.raises(ValidationError, match="differs"):
        generate_synthetic(10, neuron_ids=ids)


def test_find_neuron_list(tmp_path):
    assert find_neuron_list(tmp_path, None) is None
    (tmp_path / "flywire-783").mkdir()
    _fake_list(tmp_path / "flywire-783" / "2025_Completeness_783.csv")
    assert find_neuron_list(tmp_path) == tmp_path / "flywire-783" / "2025_Completeness_783.csv"


@pytest.mark.skipif(not REAL_LIST.is_file(), reason="v783 neuron list not available here")
def test_real_v783_ids():
    params = SyntheticParams(mean_out_degree=3.0)  # sparse, to stay fast
    net = generate_synthetic(neuron_list=REAL_LIST, seed=0, params=params)
    assert net.n_neurons == 138_639
    assert int(net.flywire_ids[0]) == 720575940596125868
    builtin_experiment("sugar").resolve(net)


def _small_generate(monkeypatch, calls):
    real = synthetic.generate_synthetic

    def fake(n_neurons=None, *, seed=0, neuron_list=None, **kw):
        calls.append(seed)
        return real(500, seed=seed)

    monkeypatch.setattr(synthetic, "generate_synthetic", fake)


def test_ensure_synthetic_generates_once(tmp_path, monkeypatch):
    calls: list[int] = []
    _small_generate(monkeypatch, calls)
    folder = ensure_synthetic(tmp_path, seed=4, progress=False)
    assert folder == tmp_path / "synthetic-v1-seed4"
    for name in SYNTHETIC_FILES.values():
        assert (folder / name).is_file()
    assert ensure_synthetic(tmp_path, seed=4, progress=False) == folder
    assert calls == [4]
    assert [p.name for p in tmp_path.iterdir()] == ["synthetic-v1-seed4"]  # no temp folder left


def test_interrupted_generation_is_not_taken_as_complete(tmp_path, monkeypatch):
    calls: list[int] = []
    _small_generate(monkeypatch, calls)

    def broken(net, folder):
        (Path(folder) / "Completeness_synthetic.csv").write_text(",Completed\n")
        raise KeyboardInterrupt

    monkeypatch.setattr(synthetic, "write_synthetic", broken)
    with pytest.raises(KeyboardInterrupt):
        ensure_synthetic(tmp_path, seed=0, progress=False)
    assert list(tmp_path.iterdir()) == []
    monkeypatch.undo()
    _small_generate(monkeypatch, calls)
    folder = ensure_synthetic(tmp_path, seed=0, progress=False)
    assert (folder / "SYNTHETIC").is_file()


def test_loader_reads_the_files(small, tmp_path):
    datasets = pytest.importorskip("brainfly.connectome.datasets")
    folder = write_synthetic(small, tmp_path / "synthetic-v1-seed1")
    net = datasets.load_folder(folder, progress=False, verify_checksums=False, annotations=False, synthetic=True)
    assert net.synthetic
    np.testing.assert_array_equal(net.flywire_ids, small.flywire_ids)
    np.testing.assert_array_equal(net.indptr, small.indptr)
    np.testing.assert_array_equal(net.post_idx, small.post_idx)
    np.testing.assert_array_equal(net.weight, small.weight)


@pytest.mark.slow
def test_full_size_generation():
    t0 = time.perf_counter()
    net = generate_synthetic(seed=0)
    elapsed = time.perf_counter() - t0
    s = net.meta["statistics"]
    assert s["n_neurons"] == 138_639
    assert s["n_connections"] == 15_091_983
    assert 50e6 < s["n_synapses"] < 60e6
    assert 0.30 <= s["inhibitory_share_connections"] <= 0.36
    assert s["out_degree"]["p100"] > 2000 and s["in_degree"]["p100"] > 2000
    assert np.unique(_keys(net)).shape[0] == net.n_connections
    builtin_experiment("sugar").resolve(net)
    print(f"full-size generation: {elapsed:.1f} s")



def test_stale_generation_is_regenerated(tmp_path, monkeypatch):
    """A cached folder from an older calibration (other knobs) is not silently reused."""
    import json

    from brainfly.connectome import synthetic as syn

    original = syn.generate_synthetic
    monkeypatch.setattr(syn, "generate_synthetic", lambda **kw: original(500, **kw))
    folder = syn.ensure_synthetic(tmp_path, seed=3, progress=False)
    meta = folder / syn.SYNTHETIC_FILES["meta"]
    assert syn._is_current(folder)
    info = json.loads(meta.read_text())
    info["params"]["pathway_synapses"] = -1.0
    meta.write_text(json.dumps(info))
    assert not syn._is_current(folder)
    again = syn.ensure_synthetic(tmp_path, seed=3, progress=False)
    assert again == folder and syn._is_current(again)
