"""Neuron lookup: IDs, paper names, cell types and classes, the shipped v783 tables, version hints."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import brainfly.connectome.lookup as lookup
from brainfly.connectome import Connectome, cache_dir, load_folder, neuron_names, resolve_neurons
from brainfly.connectome.lookup import (
    PAPER_ALIASES,
    SHIPPED_DIR,
    SHIPPED_TABLES,
    AnnotationTable,
    annotation_table,
    attach_annotations,
    find_annotation_files,
    neuron_labels,
    read_annotation_table,
    read_annotations,
    shipped_annotations,
)
from brainfly.errors import UnknownNeuronError

SHARED = Path("/work/shared/data/flywire")
needs_shared = pytest.mark.skipif(not (SHARED / "classification_783.csv.gz").is_file(),
                                  reason="shared FlyWire files absent")

SUGAR = PAPER_ALIASES["sugar_GRN"]
MN9 = PAPER_ALIASES["MN9"]
P9 = PAPER_ALIASES["P9"]
ONLY_630 = 720575940627136514  # in Completeness_630.csv, not in Completeness_783.csv


@pytest.fixture(autouse=True)
def _own_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("BRAINFLY_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("BRAINFLY_DATA", raising=False)


def _net(ids, **meta) -> Connectome:
    ids = list(ids)
    net = Connectome.from_edges(ids, [0], [1], [1.0], name="tiny")
    net.meta.update(meta)
    return net


@pytest.fixture(params=["shipped", "attached"])
def annotated(request):
    """Sugar GRNs, MN9, P9 and one unannotated neuron: named by the shipped tables, or by the
    shared Codex tables attached from a folder (read once per process either way)."""
    net = _net(list(SUGAR) + list(MN9) + list(P9) + [123], version="783")
    if request.param == "attached":
        if not (SHARED / "classification_783.csv.gz").is_file():
            pytest.skip("shared FlyWire files absent")
        attach_annotations(net, dirs=[SHARED])
    return net


def test_ids_and_aliases_without_annotations():
    net = _net(list(MN9) + [5, 6])
    assert resolve_neurons(net, [6, "5", "MN9", 5]).tolist() == [3, 2, 0, 1, 2]
    assert resolve_neurons(net, [np.int64(6)]).dtype == np.int64
    assert resolve_neurons(net, []).size == 0
    assert resolve_neurons(net, ["mn9"]).tolist() == [0, 1]  # any case when nothing matches exactly


def test_unknown_name_suggests(annotated):
    with pytest.raises(UnknownNeuronError, match="stim: unknown neuron name 'MN8'.*Did you mean 'MN9'"):
        resolve_neurons(annotated, ["MN8"], owner="stim")
    with pytest.raises(UnknownNeuronError, match="Did you mean 'LB3'"):
        resolve_neurons(annotated, ["type:LB33"])
    with pytest.raises(UnknownNeuronError, match="unknown annotation column 'clas'.*Did you mean 'class'"):
        resolve_neurons(annotated, ["clas:gustatory"])
    with pytest.raises(KeyError):  # UnknownNeuronError is a KeyError too
        resolve_neurons(annotated, [42])


def test_unknown_name_without_annotations_explains():
    with pytest.raises(UnknownNeuronError, match="no annotation tables cover these neurons.*name FlyWire v783 IDs"):
        resolve_neurons(_net([1, 2]), ["type:LB3"])
    with pytest.raises(UnknownNeuronError, match="ships annotations for FlyWire v783 IDs only"):
        resolve_neurons(_net(list(SUGAR), version="630"), ["LB3"])  # the shipped tables name v783 IDs only


def test_bad_spec_types():
    net = _net([1, 2])
    for bad in (True, None, "", 1.5):
        with pytest.raises(UnknownNeuronError):
            resolve_neurons(net, [bad])


def test_cell_type_and_class(annotated):
    sugar_idx = list(range(21))
    assert resolve_neurons(annotated, ["LB3"]).tolist() == sugar_idx
    assert resolve_neurons(annotated, ["type:LB3"]).tolist() == sugar_idx
    assert resolve_neurons(annotated, ["lb3"]).tolist() == sugar_idx  # case-insensitive fallback
    assert resolve_neurons(annotated, ["class:gustatory"]).tolist() == sugar_idx
    assert resolve_neurons(annotated, ["super_class:motor"]).tolist() == [21, 22]
    assert resolve_neurons(annotated, ["CB0701"]).tolist() == [21, 22]  # Codex name of MN9
    assert resolve_neurons(annotated, ["type:CB0701&side:left"]).tolist() == [22]
    assert resolve_neurons(annotated, ["type:LB3&side:left"]).tolist() == sugar_idx  # all on the left
    with pytest.raises(UnknownNeuronError, match="matches all of"):
        resolve_neurons(annotated, ["type:LB3&side:right"])


@needs_shared
def test_attached_annotation_table():
    net = _net(list(SUGAR) + list(MN9) + list(P9) + [123], version="783")
    ann = attach_annotations(net, dirs=[SHARED])
    assert ann is net.annotations and ann.index.name == "flywire_id" and ann.index.dtype == np.int64
    assert {"cell_type", "super_class", "class", "side"} <= set(ann.columns)
    assert len(ann) == 25  # the unannotated neuron 123 is absent
    assert ann.loc[SUGAR[0], "cell_type"] == "LB3" and ann.loc[SUGAR[0], "sub_class"] == "sugar/water"
    assert pd.isna(ann.loc[MN9[0], "class"]) and ann.loc[MN9[0], "super_class"] == "motor"
    assert net.meta["annotations"]["classification"].endswith("classification_783.csv.gz")


def test_neuron_names(annotated):
    names = neuron_names(annotated)
    assert names[MN9[0]] == "MN9" and names[P9[1]] == "P9" and names[SUGAR[3]] == "sugar_GRN"
    assert 123 not in names and names[SUGAR[3]] == "sugar_GRN"
    plain = _net([MN9[0], 7])
    assert neuron_names(plain) == {MN9[0]: "MN9"}
    assert neuron_names(_net([SUGAR[0], 7], version="630")) == {SUGAR[0]: "sugar_GRN"}  # aliases only


# ------------------------------------------------------------------ the shipped tables
def test_shipped_files_are_the_codex_tables_unchanged():
    for kind, (name, sha) in SHIPPED_TABLES.items():
        assert hashlib.sha256((SHIPPED_DIR / name).read_bytes()).hexdigest() == sha, kind
    attribution = (SHIPPED_DIR / "ATTRIBUTION.md").read_text()
    assert "CC BY 4.0" in attribution and "Dorkenwald" in attribution and "Schlegel" in attribution
    assert all(name in attribution and sha in attribution for name, sha in SHIPPED_TABLES.values())


def test_names_offline_for_v783_ids():
    labels = neuron_labels([MN9[0], SUGAR[0], P9[0], 720575940596125868, 5])
    assert labels["name"].tolist() == ["MN9", "sugar_GRN", "P9", "T5c", ""]
    assert labels["cell_type"].tolist() == ["CB0701", "LB3", "DNp09", "T5c", ""]
    assert labels["class"].tolist() == ["", "gustatory", "", "optic_lobe_intrinsic", ""]
    table = shipped_annotations()
    assert len(table) == 139_255 and table.get("cell_type", [SUGAR[5]]).tolist() == ["LB3"]
    assert "<AnnotationTable: 139,255 neurons" in repr(table)


@needs_shared
def test_shipped_tables_name_every_v783_model_neuron():
    ids = pd.read_csv(SHARED / "Completeness_783.csv", index_col=0).index.to_numpy(np.int64)
    table = shipped_annotations()
    assert table.contains(ids).all()  # every model neuron is classified
    assert np.count_nonzero(table.get("cell_type", ids) != "") == 137_108
    assert np.count_nonzero(table.get("super_class", ids) != "") == ids.size


def test_specs_resolve_offline_on_a_v783_connectome():
    net = _net(list(SUGAR) + list(MN9) + [123])  # version not stated, e.g. the synthetic brain
    assert net.annotations is None
    assert resolve_neurons(net, ["LB3"]).tolist() == list(range(21))
    assert resolve_neurons(net, ["class:gustatory&side:left"]).tolist() == list(range(21))
    assert attach_annotations(net, dirs=[]) is None and net.annotations is None  # no files: lazy fallback
    frame = annotation_table(net).restrict(net.flywire_ids).to_frame()
    assert len(frame) == 23 and frame.loc[MN9[1], "cell_type"] == "CB0701"


def test_shipped_tables_are_cached_as_parquet_by_digest(monkeypatch):
    monkeypatch.setattr(lookup, "_TABLES", {})  # as in a fresh process (this test's cache folder is empty)
    shipped_annotations()
    cached = list((cache_dir() / "annotations").glob("*.parquet"))
    assert len(cached) == 1
    monkeypatch.setattr(lookup, "_TABLES", {})

    def no_csv(*args, **kwargs):
        raise AssertionError("read the CSV files again")

    monkeypatch.setattr(lookup, "read_annotation_table", no_csv)
    again = shipped_annotations()  # from the parquet cache
    assert len(again) == 139_255 and again.get("class", [SUGAR[0]]).tolist() == ["gustatory"]
    cached[0].write_bytes(b"garbage")
    monkeypatch.setattr(lookup, "read_annotation_table", read_annotation_table)
    monkeypatch.setattr(lookup, "_TABLES", {})
    assert len(shipped_annotations()) == 139_255  # an unreadable cache entry is rebuilt
    assert cached[0].read_bytes()[:4] == b"PAR1"


def test_annotation_table_round_trips():
    frame = pd.DataFrame({"cell_type": ["b", None, "a"], "side": ["left", "right", None]},
                         index=pd.Index([30, 10, 20], name="flywire_id"))
    table = AnnotationTable.from_frame(frame)
    assert table.flywire_ids.tolist() == [10, 20, 30] and table.get("cell_type", [30, 10, 99]).tolist() == ["b", "", ""]
    back = AnnotationTable.from_arrow(table.to_arrow())
    assert back.get("side", [10, 20, 30]).tolist() == ["right", "", "left"]
    assert back.to_frame().astype(object).where(back.to_frame().notna(), None).loc[30].tolist() == ["b", "left"]
    ids, matched = table.ids_where("cell_type", "A")
    assert ids.tolist() == [20] and matched == ["a"]


@needs_shared
def test_id_of_other_version_is_explained(monkeypatch):
    monkeypatch.setenv("BRAINFLY_DATA", str(SHARED))
    net = _net([MN9[0], 7], version="783")
    with pytest.raises(UnknownNeuronError, match=r"silenced set: FlyWire ID 720575940627136514 .*FlyWire v630 "
                                                 r"\(Completeness_630.csv\) but not of v783"):
        resolve_neurons(net, [ONLY_630], owner="silenced set")
    net630 = _net([ONLY_630, 7], version="630")
    with pytest.raises(UnknownNeuronError, match="FlyWire v783"):
        resolve_neurons(net630, ["P9"])
    with pytest.raises(UnknownNeuronError, match="18 digits"):
        resolve_neurons(net, [12345])


def test_alias_partly_missing_uses_the_rest(caplog):
    net = _net([MN9[0], 7])
    assert resolve_neurons(net, ["MN9"]).tolist() == [0]
    assert str(MN9[1]) in caplog.text


def test_supplemental_tsv_and_version_filter(tmp_path):
    tsv = tmp_path / "Supplemental_file1_neuron_annotations.tsv"
    pd.DataFrame({"root_id": [11, 22, 33], "root_630": [1, 2, 3], "super_class": ["sensory", "motor", ""],
                  "cell_class": ["gustatory", "", ""], "cell_type": ["LB3", "MN9x", ""],
                  "side": ["left", "right", "left"]}).to_csv(tsv, sep="\t", index=False)
    (tmp_path / "classification_630.csv").write_text("root_id,super_class\n1,optic\n")
    files = find_annotation_files([tmp_path], "783")
    assert list(files) == ["supplemental"]
    ann = read_annotations(files, "783")
    assert ann.loc[11, "class"] == "gustatory" and pd.isna(ann.loc[33, "cell_type"])
    ann630 = read_annotations(find_annotation_files([tmp_path], "630"), "630")
    assert ann630.loc[1, "super_class"] == "optic" and ann630.loc[2, "cell_type"] == "MN9x"


def test_annotations_found_next_to_the_data(tmp_path, connectome_files):
    connectome_files(tmp_path)
    import gzip

    with gzip.open(tmp_path / "consolidated_cell_types.csv.gz", "wt") as f:
        f.write("root_id,primary_type,additional_type(s)\n22,LB3,\n33,LB3,x\n")
    net = load_folder(tmp_path, progress=False)
    assert resolve_neurons(net, ["LB3"]).tolist() == [1, 2]
    assert net.annotations.loc[33, "additional_types"] == "x"
    again = load_folder(tmp_path, progress=False)  # annotations come from the parquet cache
    assert again.annotations.equals(net.annotations)
