"""Reading and verifying the canonical connectome files (brainfly.connectome.files, datasets)."""

from __future__ import annotations

from pathlib import Path
import shutil

import numpy as np
import pandas as pd
import pytest

from brainfly.connectome import load_connectome, load_folder
from brainfly.connectome.files import (
    PINNED_FILES,
    check_pinned,
    file_version,
    find_source_files,
    read_connectivity,
    read_neuron_list,
    sha256_file,
)
from brainfly.errors import ChecksumError, DataError, DataNotFoundError

SHARED = Path("/work/shared/data/flywire")
needs_shared = pytest.mark.skipif(not (SHARED / "Completeness_783.csv").is_file(), reason="shared FlyWire files absent")


@pytest.fixture(autouse=True)
def _own_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("BRAINFLY_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("BRAINFLY_DATA", raising=False)


def test_load_tiny_folder_builds_csr(tmp_path, connectome_files):
    connectome_files(tmp_path / "d")
    net = load_connectome(tmp_path / "d", progress=False)
    assert net.flywire_ids.tolist() == [11, 22, 33, 44, 55]
    assert net.indptr.tolist() == [0, 2, 2, 3, 4, 4]
    assert net.post_idx.tolist() == [1, 4, 0, 2]  # file order kept within a presynaptic neuron
    assert net.weight.tolist() == [3.0, -1.0, -2.0, 5.0]
    assert net.post_idx.dtype == np.int32 and net.weight.dtype == np.float64
    assert net.indptr.dtype == np.int64 and net.flywire_ids.dtype == np.int64
    assert not net.synthetic
    assert net.meta["files"]["connectivity"]["checksum"] == "unpinned"
    assert net.meta["cache"] == "miss"
    assert net.name == str(tmp_path / "d")  # unpublished files do not claim a dataset name


def test_string_path_and_file_path_accepted(tmp_path, connectome_files):
    comp, conn = connectome_files(tmp_path / "d")
    assert load_connectome(str(tmp_path / "d"), progress=False).n_connections == 4
    assert load_connectome(conn, progress=False).n_neurons == 5


def test_crlf_neuron_list(tmp_path, connectome_files):
    comp, _ = connectome_files(tmp_path, crlf=True)
    assert b"\r\n" in comp.read_bytes()
    assert read_neuron_list(comp).tolist() == [11, 22, 33, 44, 55]


def test_synthetic_marker(tmp_path, connectome_files):
    connectome_files(tmp_path)
    (tmp_path / "SYNTHETIC").touch()
    net = load_folder(tmp_path, progress=False)
    assert net.synthetic and "SYNTHETIC" in net.label and net.name == "synthetic"


def test_synthetic_meta_json(tmp_path, connectome_files):
    connectome_files(tmp_path)
    (tmp_path / "synthetic.json").write_text('{"synthetic": true, "name": "synthetic-seed3", "seed": 3}')
    net = load_folder(tmp_path, progress=False)
    assert net.synthetic and net.name == "synthetic-seed3" and net.meta["generator"]["seed"] == 3


# ------------------------------------------------------------------ folder contents
def test_file_version():
    assert file_version("2023_03_23_completeness_630_final.csv") == "630"
    assert file_version("2025_Connectivity_783.parquet") == "783"
    assert file_version("Completeness_synthetic.csv") is None


def test_find_source_files_pairs_versions(tmp_path, connectome_files):
    connectome_files(tmp_path, comp_name="Completeness_x_630.csv", conn_name="Connectivity_x_630.parquet")
    connectome_files(tmp_path, comp_name="Completeness_x_783.csv", conn_name="Connectivity_x_783.parquet")
    src = find_source_files(tmp_path)
    assert src.version == "783" and src.connectivity.name == "Connectivity_x_783.parquet"
    src = find_source_files(tmp_path, "630")
    assert src.completeness.name == "Completeness_x_630.csv"


def test_find_source_files_mismatched_versions(tmp_path, connectome_files):
    connectome_files(tmp_path, comp_name="Completeness_x_630.csv", conn_name="Connectivity_x_783.parquet")
    with pytest.raises(DataError, match="different FlyWire versions"):
        find_source_files(tmp_path)


def test_missing_files_say_what_is_expected(tmp_path):
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(DataNotFoundError, match="Connectivity_783.parquet") as e:
        load_connectome(tmp_path, progress=False)
    assert "notes.txt" in str(e.value)
    with pytest.raises(DataNotFoundError, match="neither a folder nor a dataset name"):
        load_connectome(tmp_path / "nowhere", progress=False)
    with pytest.raises(DataNotFoundError, match="flywire-783"):
        load_connectome("flywire-78", progress=False)


# ------------------------------------------------------------------ refused files
def test_corrupt_parquet(tmp_path, connectome_files):
    _, conn = connectome_files(tmp_path)
    conn.write_bytes(b"this is not parquet at all" * 10)
    with pytest.raises(DataError, match="Connectivity_tiny.parquet.*not a readable parquet"):
        load_folder(tmp_path, progress=False)


def test_truncated_parquet(tmp_path, connectome_files):
    _, conn = connectome_files(tmp_path)
    data = conn.read_bytes()
    conn.write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match="Connectivity_tiny.parquet"):
        load_folder(tmp_path, progress=False)


def test_corrupt_csv(tmp_path, connectome_files):
    comp, _ = connectome_files(tmp_path)
    comp.write_bytes(bytes(range(256)) * 4)
    with pytest.raises(DataError, match="Completeness_tiny.csv"):
        load_folder(tmp_path, progress=False)


def test_truncated_csv(tmp_path, connectome_files):
    comp, _ = connectome_files(tmp_path)
    comp.write_bytes(comp.read_bytes()[:-7])  # cut inside the last row
    with pytest.raises(DataError, match="Completeness_tiny.csv.*row 5"):
        read_neuron_list(comp)


def test_empty_csv(tmp_path):
    p = tmp_path / "Completeness_e.csv"
    p.write_text("")
    with pytest.raises(DataError, match="Completeness_e.csv"):
        read_neuron_list(p)


def test_duplicate_neuron_ids(tmp_path, connectome_files):
    connectome_files(tmp_path, ids=[11, 22, 11, 44, 55])
    with pytest.raises(DataError, match="duplicate root ID.*11"):
        load_folder(tmp_path, progress=False)


@pytest.mark.parametrize("change, message", [
    ({("Presynaptic_ID", 1): 999}, "row 2 has Presynaptic_ID 999|Presynaptic_Index 2 and Presynaptic_ID 999"),
    ({("Postsynaptic_Index", 0): 2}, "Postsynaptic_Index 2 and Postsynaptic_ID 22"),
    ({("Postsynaptic_Index", 3): 7}, "Postsynaptic_Index 7 in row 4 is out of range"),
    ({("Presynaptic_Index", 0): -1}, "Presynaptic_Index -1 in row 1 is out of range"),
    ({("Excitatory x Connectivity", 2): 1}, "row 3 has 'Excitatory x Connectivity' 1"),
    ({("Connectivity", 1): 0, ("Excitatory x Connectivity", 1): 0}, "Connectivity 0 in row 2"),
    ({("Excitatory", 0): 5}, "Excitatory 5 in row 1"),
])
def test_inconsistent_connectivity(tmp_path, connectome_files, change, message):
    _, conn = connectome_files(tmp_path)
    df = pd.read_parquet(conn)
    for (col, row), value in change.items():
        df.loc[row, col] = value
    df.to_parquet(conn, index=False)
    with pytest.raises(DataError, match=message):
        load_folder(tmp_path, progress=False)


def test_missing_column_and_bad_dtype(tmp_path, connectome_files):
    _, conn = connectome_files(tmp_path)
    df = pd.read_parquet(conn)
    df.drop(columns=["Excitatory"]).to_parquet(conn, index=False)
    with pytest.raises(DataError, match="missing column.*Excitatory"):
        load_folder(tmp_path, progress=False)
    df.assign(Presynaptic_ID=df.Presynaptic_ID.astype(str)).to_parquet(conn, index=False)
    with pytest.raises(DataError, match="'Presynaptic_ID' has type"):
        load_folder(tmp_path, progress=False)


def test_nulls_refused(tmp_path, connectome_files):
    _, conn = connectome_files(tmp_path)
    df = pd.read_parquet(conn).astype({"Connectivity": "Int64"})
    df.loc[2, "Connectivity"] = pd.NA
    df.to_parquet(conn, index=False)
    with pytest.raises(DataError, match="'Connectivity' is empty.*row 3"):
        load_folder(tmp_path, progress=False)


def test_boolean_excitatory_and_unsorted_rows(tmp_path, connectome_files):
    _, conn = connectome_files(tmp_path)
    df = pd.read_parquet(conn)
    df = df.assign(Excitatory=df.Excitatory.astype(bool)).iloc[::-1]
    df.to_parquet(conn, index=False)
    ids = read_neuron_list(tmp_path / "Completeness_tiny.csv")
    indptr, post, w = read_connectivity(conn, ids)
    assert indptr.tolist() == [0, 2, 2, 3, 4, 4]
    assert post.tolist() == [4, 1, 0, 2] and w.tolist() == [-1.0, 3.0, -2.0, 5.0]


# ------------------------------------------------------------------ pinned checksums
def test_published_name_with_wrong_content_is_refused(tmp_path, connectome_files):
    connectome_files(tmp_path, comp_name="Completeness_783.csv", conn_name="Connectivity_783.parquet")
    with pytest.raises(ChecksumError, match="Completeness_783.csv: size"):
        load_folder(tmp_path, progress=False)
    net = load_folder(tmp_path, progress=False, verify_checksums=False)
    assert net.meta["files"]["completeness"]["checksum"] == "not checked"
    assert net.name == str(tmp_path) and not net.meta["checksums_verified"]


def test_published_size_but_wrong_digest(tmp_path):
    p = tmp_path / "Completeness_783.csv"
    p.write_bytes(b"x" * PINNED_FILES[p.name].size)
    with pytest.raises(ChecksumError, match="SHA-256"):
        check_pinned(p, sha256_file(p), p.stat().st_size)


@needs_shared
def test_real_neuron_lists_verify(tmp_path):
    for name, src in (("Completeness_783.csv", "Completeness_783.csv"),
                      ("2023_03_23_completeness_630_final.csv", "Completeness_630.csv")):
        p = tmp_path / name
        shutil.copyfile(SHARED / src, p)
        assert check_pinned(p, sha256_file(p), p.stat().st_size) == "verified"
    ids = read_neuron_list(tmp_path / "Completeness_783.csv")
    assert ids.shape == (138_639,) and ids.dtype == np.int64
    # the 2025_ copy has CRLF line endings: same content, verified after normalizing them
    crlf = tmp_path / "2025_Completeness_783.csv"
    crlf.write_bytes((SHARED / "Completeness_783.csv").read_bytes().replace(b"\n", b"\r\n"))
    assert check_pinned(crlf, sha256_file(crlf), crlf.stat().st_size) == "verified"
    assert np.array_equal(read_neuron_list(crlf), ids)
    crlf.write_bytes(crlf.read_bytes()[:-30])
    with pytest.raises(ChecksumError, match="2025_Completeness_783.csv"):
        check_pinned(crlf, sha256_file(crlf), crlf.stat().st_size)


@pytest.mark.slow
def test_full_size_load_is_vectorized(tmp_path, connectome_files):
    """15M connections over 138,639 neurons: first load (verify + CSR) and cached load."""
    import time

    rng = np.random.default_rng(0)
    n, m = 138_639, 15_091_983
    ids = np.arange(n, dtype=np.int64) + 720575940600000000
    pre = np.sort(rng.integers(0, n, m))
    post = rng.integers(0, n, m)
    conn = rng.integers(1, 40, m)
    exc = (rng.random(m) < 0.7).astype(np.int64)
    folder = tmp_path / "big"
    folder.mkdir()
    (folder / "Completeness_big.csv").write_text(",Completed\n" + "".join(f"{i},True\n" for i in ids.tolist()))
    pd.DataFrame({"Presynaptic_ID": ids[pre], "Postsynaptic_ID": ids[post], "Presynaptic_Index": pre,
                  "Postsynaptic_Index": post, "Connectivity": conn, "Excitatory": exc,
                  "Excitatory x Connectivity": conn * np.where(exc > 0, 1, -1)}).to_parquet(
        folder / "Connectivity_big.parquet", index=False)
    t0 = time.perf_counter()
    net = load_folder(folder, progress=False)
    first = time.perf_counter() - t0
    t0 = time.perf_counter()
    again = load_folder(folder, progress=False)
    second = time.perf_counter() - t0
    assert net.n_connections == m and again.meta["cache"] == "hit"
    assert second < 1.0, f"cached load took {second:.2f} s (first {first:.2f} s)"


# ------------------------------------------------------------------ the synthetic dataset
@pytest.fixture
def fake_generator(monkeypatch, connectome_files):
    """Replace the (slow, full-size) generator by one writing tiny files in its format."""
    import brainfly.connectome.synthetic as synthetic

    calls = []

    def ensure_synthetic(cache_dir, *, seed=0, progress=True, **kwargs):
        folder = Path(cache_dir) / f"synthetic-test-seed{seed}"
        calls.append(seed)
        if not (folder / "SYNTHETIC").exists():
            connectome_files(folder, comp_name="Completeness_synthetic.csv", conn_name="Connectivity_synthetic.parquet")
            (folder / "synthetic.json").write_text(f'{{"synthetic": true, "name": "synthetic-test-seed{seed}", "seed": {seed}}}')
            (folder / "SYNTHETIC").touch()
        return folder

    import brainfly.connectome.datasets as datasets

    monkeypatch.setattr(synthetic, "ensure_synthetic", ensure_synthetic)
    monkeypatch.setattr(datasets, "ensure_synthetic", ensure_synthetic)
    return calls


def test_synthetic_dataset_name(fake_generator, tmp_path):
    net = load_connectome("synthetic", progress=False)
    assert net.synthetic and net.name == "synthetic-test-seed0" and net.n_connections == 4
    assert Path(net.meta["source_dir"]).parent == tmp_path / "cache"
    assert load_connectome("synthetic-3", progress=False).meta["seed"] == 3
    assert fake_generator == [0, 3]
    assert load_connectome("synthetic", progress=False).meta["cache"] == "hit"


def test_no_data_anywhere_falls_back_to_synthetic_and_says_so(fake_generator, monkeypatch):
    from brainfly.connectome import best_available_dataset
    from brainfly.connectome import download as dl

    monkeypatch.setenv("BRAINFLY_DATA_URL", "http://127.0.0.1:9/")
    monkeypatch.setattr(dl, "_REACHABLE", {})
    assert best_available_dataset() == "synthetic"
    net = load_connectome(progress=False)
    assert net.synthetic and "synthetic" in net.meta["choice"]


def test_folder_manifest_digest_is_checked(tmp_path, connectome_files):
    import json

    comp, conn = connectome_files(tmp_path)
    manifest = {"synthetic": True, "files": {conn.name: {"sha256": sha256_file(conn)}}}
    (tmp_path / "synthetic.json").write_text(json.dumps(manifest))
    net = load_folder(tmp_path, progress=False)
    assert net.meta["files"]["connectivity"]["checksum"] == "matches folder manifest"
    manifest["files"][conn.name]["sha256"] = "0" * 64
    (tmp_path / "synthetic.json").write_text(json.dumps(manifest))
    with pytest.raises(ChecksumError, match="recorded next to it"):
        load_folder(tmp_path, progress=False)
