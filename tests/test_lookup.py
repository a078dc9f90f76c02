"""Neuron lookup: IDs, paper names, cell types and classes, version hints (connectome.lookup)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from brainfly.connectome import Connectome, load_folder, neuron_names, resolve_neurons
from brainfly.connectome.lookup import PAPER_ALIASES, attach_annotations, find_annotation_files, read_annotations
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


@pytest.fixture(scope="module")
def codex_table():
    """The shared Codex tables, read once per module (about 0.5 s)."""
    if not (SHARED / "classification_783.csv.gz").is_file():
        pytest.skip("shared FlyWire files absent")
    return read_annotations(find_annotation_files([SHARED], "783"), "783")


@pytest.fixture
def annotated(codex_table, monkeypatch):
    """Sugar GRNs, MN9, P9 and one unannotated neuron, with the shared Codex tables."""
    import brainfly.connectome.lookup as lookup

    monkeypatch.setattr(lookup, "read_annotations", lambda files, version=None: codex_table)
    net = _net(list(SUGAR) + list(MN9) + list(P9) + [123], version="783")
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
    with pytest.raises(UnknownNeuronError, match="no annotation tables are loaded"):
        resolve_neurons(_net([1, 2]), ["type:LB3"])


def test_bad_spec_types():
    net = _net([1, 2])
    for bad in (True, None, "", 1.5):
        with pytest.raises(UnknownNeuronError):
            resolve_neurons(net, [bad])


@needs_shared
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
def test_annotation_table(annotated):
    ann = annotated.annotations
    assert ann.index.name == "flywire_id" and ann.index.dtype == np.int64
    assert {"cell_type", "super_class", "class", "side"} <= set(ann.columns)
    assert len(ann) == 25  # the unannotated neuron 123 is absent
    assert ann.loc[SUGAR[0], "cell_type"] == "LB3" and ann.loc[SUGAR[0], "sub_class"] == "sugar/water"
    assert annotated.meta["annotations"]["classification"].endswith("classification_783.csv.gz")


@needs_shared
def test_neuron_names(annotated):
    names = neuron_names(annotated)
    assert names[MN9[0]] == "MN9" and names[P9[1]] == "P9" and names[SUGAR[3]] == "sugar_GRN"
    assert 123 not in names
    plain = _net([MN9[0], 7])
    assert neuron_names(plain) == {MN9[0]: "MN9"}


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
