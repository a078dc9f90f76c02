"""The cache folder: digest index, CSR cache, cache_dir (brainfly.connectome.cache)."""

from __future__ import annotations

import os

import numpy as np
import pytest

from brainfly.connectome import cache as cache_mod
from brainfly.connectome import cache_dir, datasets, files, load_folder
from brainfly.connectome.cache import csr_key, file_sha256, load_csr, save_csr


@pytest.fixture(autouse=True)
def _own_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("BRAINFLY_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("BRAINFLY_DATA", raising=False)


def test_cache_dir_from_env_and_default(tmp_path, monkeypatch):
    assert cache_dir() == tmp_path / "cache"
    monkeypatch.delenv("BRAINFLY_CACHE_DIR")
    assert cache_dir().name.lower() == "brainfly"


def test_second_load_reads_only_the_cache(tmp_path, connectome_files, monkeypatch):
    connectome_files(tmp_path / "d")
    first = load_folder(tmp_path / "d", progress=False)
    assert first.meta["cache"] == "miss"
    entry = cache_dir() / "csr" / first.meta["cache_key"]
    assert sorted(p.name for p in entry.iterdir()) == [
        "flywire_ids.npy", "indptr.npy", "meta.json", "post_idx.npy", "weight.npy"]

    def boom(*a, **k):
        raise AssertionError("source files read again")

    monkeypatch.setattr(datasets, "read_connectivity", boom)
    monkeypatch.setattr(datasets, "read_neuron_list", boom)
    monkeypatch.setattr(cache_mod, "sha256_file", boom)  # digests come from the index
    second = load_folder(tmp_path / "d", progress=False)
    assert second.meta["cache"] == "hit"
    for name in ("flywire_ids", "indptr", "post_idx", "weight"):
        a, b = getattr(first, name), getattr(second, name)
        assert a.dtype == b.dtype and np.array_equal(a, b)
    assert not list(cache_dir().rglob("*.part"))  # atomic writes leave no temporaries


def test_changed_source_gives_new_entry(tmp_path, connectome_files):
    connectome_files(tmp_path / "d")
    key1 = load_folder(tmp_path / "d", progress=False).meta["cache_key"]
    connectome_files(tmp_path / "d", edges=[(0, 1, 7, True)])
    net = load_folder(tmp_path / "d", progress=False)
    assert net.meta["cache"] == "miss" and net.meta["cache_key"] != key1
    assert net.weight.tolist() == [7.0]


def test_digest_index_rehashes_only_on_change(tmp_path, monkeypatch):
    p = tmp_path / "f.bin"
    p.write_bytes(b"abc")
    calls = []
    real = cache_mod.sha256_file
    monkeypatch.setattr(cache_mod, "sha256_file", lambda path: calls.append(path) or real(path))
    sha, size = file_sha256(p)
    assert sha == files.sha256_file(p) and size == 3
    file_sha256(p)
    assert len(calls) == 1
    p.write_bytes(b"abcd")
    st = p.stat()
    os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    assert file_sha256(p)[0] == files.sha256_file(p)
    assert len(calls) == 2


def test_corrupt_cache_entry_is_rebuilt(tmp_path, connectome_files):
    connectome_files(tmp_path / "d")
    key = load_folder(tmp_path / "d", progress=False).meta["cache_key"]
    (cache_dir() / "csr" / key / "weight.npy").write_bytes(b"garbage")
    assert load_csr(key) is None
    net = load_folder(tmp_path / "d", progress=False)
    assert net.meta["cache"] == "miss" and net.weight.tolist() == [3.0, -1.0, -2.0, 5.0]
    assert load_csr(key) is not None


def test_cache_entry_with_wrong_sizes_is_ignored():
    arrays = {"flywire_ids": np.array([1, 2], np.int64), "indptr": np.array([0, 1, 1], np.int64),
              "post_idx": np.array([1], np.int32), "weight": np.array([2.0])}
    key = csr_key("a" * 64, "b" * 64)
    save_csr(key, arrays, {})
    got, meta = load_csr(key)
    assert meta["n_neurons"] == 2 and got["post_idx"].dtype == np.int32
    np.save(cache_dir() / "csr" / key / "post_idx.npy", np.array([1, 0], np.int32))
    assert load_csr(key) is None


def test_unwritable_cache_still_loads(tmp_path, connectome_files, monkeypatch):
    connectome_files(tmp_path / "d")
    blocker = tmp_path / "file-not-folder"
    blocker.write_text("x")
    monkeypatch.setenv("BRAINFLY_CACHE_DIR", str(blocker))
    net = load_folder(tmp_path / "d", progress=False)
    assert net.n_connections == 4 and net.meta["cache"] == "miss"
