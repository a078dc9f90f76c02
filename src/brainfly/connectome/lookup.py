"""Neuron lookup: FlyWire IDs, paper names (MN9, P9, ...), cell types and classes.

A neuron spec is one of:

=========================  ===============================================================
``720575940660219265``     a FlyWire root ID (int, or a string of digits)
``MN9``                    a paper name (:data:`PAPER_ALIASES`), else a cell type (exact
                           case first, then any case)
``type:LB3``               all neurons of a cell type (``cell_type:`` works too)
``class:gustatory``        all neurons of an annotation column's value; columns:
                           ``super_class``, ``class``, ``sub_class``, ``flow``, ``side``,
                           ``hemilineage``, ``nerve``, ``hemibrain_type``
``type:LB3&side:left``     the intersection of several of the above (joined with ``&``)
=========================  ===============================================================

Where cell types and classes come from, first found wins:

1. annotation tables in the data folder, in ``$BRAINFLY_DATA``, or in the cache folder
   (gzip accepted): FlyWire's ``Supplemental_file1_neuron_annotations.tsv`` (root_id,
   super_class, cell_class, cell_sub_class, cell_type, hemibrain_type, side, ...), and/or
   the Codex tables ``classification*.csv`` (root_id, flow, super_class, class, sub_class,
   hemilineage, side, nerve) and ``consolidated_cell_types*.csv`` (root_id, primary_type,
   additional_type(s)). :func:`attach_annotations` attaches them as
   ``connectome.annotations``: a pandas DataFrame indexed by ``flywire_id`` (int64, the
   connectome's neurons only) with the columns ``cell_type``, ``super_class``, ``class``,
   ``side`` and any others the files give;
2. otherwise, for a connectome of FlyWire v783 IDs (or of unknown version, such as the
   synthetic brain, which reuses v783 IDs), the Codex v783 tables shipped with brainfly
   (``brainfly/data/flywire``, FlyWire Consortium, CC BY 4.0; see ``ATTRIBUTION.md``
   there): names work offline for every v783 ID. They are read on first use only.

Tables are read with pyarrow into an :class:`AnnotationTable` (dictionary codes, numpy),
cached as parquet in ``cache_dir()/annotations/`` under a key made of the files' SHA-256,
and kept in memory for the process: names cost milliseconds after the first use. pandas
and pyarrow are imported only when a table is needed (they take 0.2-0.5 s to import).
"""

from __future__ import annotations

import csv
import gzip
import io
import logging
import os
from pathlib import Path
import re
from typing import Any, Iterable, Mapping

import numpy as np

from .._io import atomic_write
from ..errors import DataError, UnknownNeuronError, suggest
from .cache import cache_dir, csr_key, downloads_dir, file_sha256
from .files import file_version, is_completeness_file, read_neuron_list

__all__ = [
    "SUGAR_GRNS_783",
    "PAPER_ALIASES",
    "ANNOTATION_COLUMNS",
    "SHIPPED_DIR",
    "SHIPPED_TABLES",
    "SHIPPED_VERSION",
    "AnnotationTable",
    "resolve_neurons",
    "neuron_names",
    "neuron_labels",
    "annotation_table",
    "shipped_annotations",
    "find_annotation_files",
    "read_annotations",
    "read_annotation_table",
    "load_annotation_table",
    "attach_annotations",
]

log = logging.getLogger(__name__)

#: The 21 sugar gustatory receptor neurons (v783, Codex type LB3) of the reference benchmark.
SUGAR_GRNS_783: tuple[int, ...] = (
    720575940624963786, 720575940630233916, 720575940637568838, 720575940638202345,
    720575940617000768, 720575940630797113, 720575940632889389, 720575940621754367,
    720575940621502051, 720575940640649691, 720575940639332736, 720575940616885538,
    720575940639198653, 720575940639259967, 720575940617937543, 720575940632425919,
    720575940633143833, 720575940612670570, 720575940628853239, 720575940629176663,
    720575940611875570,
)

#: Paper names the annotations don't carry (DESIGN.md), to FlyWire IDs (v783).
PAPER_ALIASES: dict[str, tuple[int, ...]] = {
    "MN9": (720575940660219265, 720575940618238523),
    "P9": (720575940627652358, 720575940635872101),
    "aDN1": (720575940616185531,),
    "DN2": (720575940629806974,),
    "aBN1": (720575940630907434,),
    # the 21 sugar gustatory receptor neurons of the reference benchmark (Codex type LB3)
    "sugar_GRN": SUGAR_GRNS_783,
}

#: Columns of ``connectome.annotations`` usable as ``column:value`` (``type`` = ``cell_type``).
ANNOTATION_COLUMNS = ("cell_type", "super_class", "class", "sub_class", "flow", "side",
                      "hemilineage", "nerve", "hemibrain_type")
_PREFIX_ALIASES = {"type": "cell_type", "cell_class": "class", "superclass": "super_class"}
#: Columns every table has (all missing when no file gives them).
_BASE_COLUMNS = ("cell_type", "super_class", "class", "side")

#: Folder of the annotation tables shipped as package data.
SHIPPED_DIR: Path = Path(__file__).resolve().parent.parent / "data" / "flywire"
#: The shipped tables (FlyWire Codex v783, CC BY 4.0): kind -> (file name, SHA-256 as shipped).
SHIPPED_TABLES: dict[str, tuple[str, str]] = {
    "classification": ("classification_783.csv.gz",
                       "10b243ef09964e1bf0c2d30bd353235fb498d4c43dc03354d22df1568b79f8dd"),
    "cell_types": ("consolidated_cell_types_783.csv.gz",
                   "8b2013483295b939fa5971f78659394bfe15991317d7d6d5520b1da3fccadc7b"),
}
#: The FlyWire version whose root IDs the shipped tables describe.
SHIPPED_VERSION = "783"

_SUPPLEMENTAL_RE = re.compile(r"^supplemental_file1_neuron_annotations.*\.tsv(\.gz)?$", re.IGNORECASE)
_CLASSIFICATION_RE = re.compile(r"^classification.*\.csv(\.gz)?$", re.IGNORECASE)
_CELL_TYPES_RE = re.compile(r"^consolidated_cell_types.*\.csv(\.gz)?$", re.IGNORECASE)
_ANNOTATION_KINDS = {"supplemental": _SUPPLEMENTAL_RE, "classification": _CLASSIFICATION_RE,
                     "cell_types": _CELL_TYPES_RE}
#: Layout of the parquet cache of merged tables; part of the cache key.
_CACHE_FORMAT = "annotations-v2"


# ====================================================================== numpy <-> pyarrow
# pyarrow's own conversions (pa.array, Array.to_numpy, Python scalars in compute calls)
# import pandas on first use, 0.4 s here; these build and read the buffers directly.
# results.py writes and reads spike files with them too.
def _arrow_from_numpy(values: np.ndarray, valid: np.ndarray | None = None) -> Any:
    """A pyarrow array over a 1-d numeric numpy array (copied only if not contiguous).

    *valid*: boolean mask, False where the value is null.
    """
    import pyarrow as pa

    arr = np.ascontiguousarray(values)
    bitmap = None
    if valid is not None and not valid.all():
        bitmap = pa.py_buffer(np.packbits(np.asarray(valid, dtype=bool), bitorder="little"))
    return pa.Array.from_buffers(pa.from_numpy_dtype(arr.dtype), arr.shape[0], [bitmap, pa.py_buffer(arr)])


def _arrow_strings(values: Iterable[str]) -> Any:
    """A pyarrow string array of some str."""
    import pyarrow as pa

    encoded = [str(v).encode() for v in values]
    offsets = np.zeros(len(encoded) + 1, dtype=np.int32)
    np.cumsum([len(b) for b in encoded], out=offsets[1:])
    return pa.Array.from_buffers(pa.string(), len(encoded), [None, pa.py_buffer(offsets), pa.py_buffer(b"".join(encoded))])


def _numpy_from_arrow(column: Any, fill: Any = 0) -> np.ndarray:
    """A numpy copy of a numeric pyarrow array or chunked array; nulls become *fill*."""
    import pyarrow as pa

    chunks = column.chunks if isinstance(column, pa.ChunkedArray) else [column]
    typ = column.type
    kind = "f" if pa.types.is_floating(typ) else "i" if pa.types.is_signed_integer(typ) else "u"
    if not (pa.types.is_floating(typ) or pa.types.is_integer(typ)):
        raise TypeError(f"not a numeric column: {typ}")
    dtype = np.dtype(f"{kind}{typ.bit_width // 8}")
    parts = []
    for chunk in chunks:
        n = len(chunk)
        bitmap, data = chunk.buffers()[:2]
        values = (np.frombuffer(data, dtype=dtype, count=n, offset=chunk.offset * dtype.itemsize)
                  if n else np.empty(0, dtype))
        if chunk.null_count:
            bits = np.unpackbits(np.frombuffer(bitmap, dtype=np.uint8), bitorder="little")
            values = np.where(bits[chunk.offset:chunk.offset + n].astype(bool), values, fill).astype(dtype)
        parts.append(values)
    return np.concatenate(parts) if parts else np.empty(0, dtype)


def _dictionary_codes(column: Any) -> tuple[np.ndarray, list[str]]:
    """Codes (int32, -1 = null or empty) and values of a string or dictionary column."""
    import pyarrow as pa

    chunks = column.chunks if isinstance(column, pa.ChunkedArray) else [column]
    values: dict[str, int] = {}
    parts = [np.empty(0, np.int32)]
    for chunk in chunks:
        if not pa.types.is_dictionary(chunk.type):
            chunk = chunk.dictionary_encode()
        local = chunk.dictionary.to_pylist()
        remap = np.array([values.setdefault(v, len(values)) if v else -1 for v in local] + [-1], dtype=np.int32)
        codes = _numpy_from_arrow(chunk.indices, fill=-1).astype(np.int64)
        parts.append(remap[codes])  # code -1 (null) picks the trailing -1
    return np.concatenate(parts).astype(np.int32), list(values)


# ====================================================================== the table
class AnnotationTable:
    """Per-neuron annotations keyed by FlyWire ID, held as dictionary codes (numpy).

    Parameters
    ----------
    flywire_ids : int64 array, shape (n,)
        Sorted, unique FlyWire root IDs.
    columns : dict
        ``{column: (codes, categories)}``: ``codes`` int32 array of shape (n,) indexing
        ``categories`` (object array of distinct str), -1 where the neuron has no value.
    source : str
        Where the table came from (shown in ``repr``).

    Notes
    -----
    Looking values up by ID (:meth:`get`) and finding the IDs of a value
    (:meth:`ids_where`) need numpy only; :meth:`to_frame` gives the pandas form.
    """

    def __init__(self, flywire_ids: np.ndarray, columns: dict[str, tuple[np.ndarray, np.ndarray]],
                 source: str = "") -> None:
        self.flywire_ids = np.asarray(flywire_ids, dtype=np.int64)
        self.columns = {str(k): (np.asarray(c, dtype=np.int32), np.asarray(v, dtype=object))
                        for k, (c, v) in columns.items()}
        self.source = source

    def __len__(self) -> int:
        return int(self.flywire_ids.shape[0])

    def __repr__(self) -> str:
        return (f"<AnnotationTable: {len(self):,} neurons, columns {', '.join(self.columns)}"
                + (f"; from {self.source}>" if self.source else ">"))

    def get(self, column: str, flywire_ids: Any) -> np.ndarray:
        """Values of *column* for some neurons.

        Parameters
        ----------
        column : str
        flywire_ids : array-like of int64, shape (m,)

        Returns
        -------
        object array of str, shape (m,)
            ``""`` for a neuron that is not in the table, has no value, or when the table
            has no such column.
        """
        ids = np.asarray(flywire_ids, dtype=np.int64).reshape(-1)
        out = np.full(ids.shape[0], "", dtype=object)
        if column not in self.columns or not len(self) or not ids.size:
            return out
        codes, cats = self.columns[column]
        pos = np.minimum(np.searchsorted(self.flywire_ids, ids), len(self) - 1)
        code = np.where(self.flywire_ids[pos] == ids, codes[pos], -1)
        has = code >= 0
        out[has] = cats[code[has]]
        return out

    def contains(self, flywire_ids: Any) -> np.ndarray:
        """Boolean mask: which of *flywire_ids* (int64) are in the table."""
        ids = np.asarray(flywire_ids, dtype=np.int64).reshape(-1)
        if not len(self):
            return np.zeros(ids.shape[0], dtype=bool)
        pos = np.minimum(np.searchsorted(self.flywire_ids, ids), len(self) - 1)
        return self.flywire_ids[pos] == ids

    def values(self, column: str) -> list[str]:
        """The distinct values that neurons of this table have in *column* (sorted)."""
        if column not in self.columns:
            return []
        codes, cats = self.columns[column]
        return sorted(cats[np.unique(codes[codes >= 0])].tolist())

    def ids_where(self, column: str, value: str) -> tuple[np.ndarray, list[str]]:
        """FlyWire IDs whose *column* equals *value*: exactly if any does, else ignoring case.

        Returns
        -------
        ids : int64 array
            Sorted; empty when nothing matches or the column is absent.
        matched : list of str
            The distinct values that matched (several only when matched ignoring case).
        """
        if column not in self.columns:
            return np.empty(0, dtype=np.int64), []
        codes, cats = self.columns[column]
        hit = np.flatnonzero(cats == value)
        if not hit.size:
            folded = value.lower()
            hit = np.flatnonzero(np.array([str(c).lower() == folded for c in cats], dtype=bool))
        if not hit.size:
            return np.empty(0, dtype=np.int64), []
        rows = np.isin(codes, hit)
        used = np.unique(codes[rows])
        return self.flywire_ids[rows], cats[used].tolist()

    def restrict(self, flywire_ids: Any) -> "AnnotationTable":
        """The rows of the given neurons only (categories kept)."""
        keep = np.isin(self.flywire_ids, np.asarray(flywire_ids, dtype=np.int64))
        return AnnotationTable(self.flywire_ids[keep], {k: (c[keep], v) for k, (c, v) in self.columns.items()},
                               self.source)

    def to_frame(self) -> Any:
        """pandas DataFrame indexed by ``flywire_id`` (int64), categorical columns (NaN = none)."""
        import pandas as pd

        data = {k: pd.Categorical.from_codes(c, categories=pd.Index(v, dtype="string"))
                for k, (c, v) in self.columns.items()}
        return pd.DataFrame(data, index=pd.Index(self.flywire_ids, dtype="int64", name="flywire_id"))

    @classmethod
    def from_frame(cls, frame: Any, source: str = "") -> "AnnotationTable":
        """From a DataFrame indexed by FlyWire ID (as ``connectome.annotations``)."""
        ids = np.asarray(frame.index, dtype=np.int64)
        order = np.argsort(ids, kind="stable")
        ids = ids[order]
        first = np.ones(ids.shape[0], dtype=bool)
        first[1:] = ids[1:] != ids[:-1]
        columns = {}
        for col in frame.columns:
            cat = frame[col].astype("category")
            codes = cat.cat.codes.to_numpy(dtype=np.int32)[order][first]
            cats = np.asarray([str(v) for v in cat.cat.categories], dtype=object)
            columns[str(col)] = (codes, cats)
        return cls(ids[first], columns, source)

    def to_arrow(self) -> Any:
        """pyarrow Table: ``flywire_id`` (int64) and one dictionary-encoded column per column."""
        import pyarrow as pa

        arrays = [_arrow_from_numpy(self.flywire_ids)]
        for codes, cats in self.columns.values():
            indices = _arrow_from_numpy(np.maximum(codes, 0), valid=codes >= 0)
            arrays.append(pa.DictionaryArray.from_arrays(indices, _arrow_strings(cats.tolist())))
        return pa.Table.from_arrays(arrays, names=["flywire_id", *self.columns])

    @classmethod
    def from_arrow(cls, table: Any, source: str = "") -> "AnnotationTable":
        """From a pyarrow Table as written by :meth:`to_arrow`."""
        ids = _numpy_from_arrow(table.column("flywire_id")).astype(np.int64, copy=False)
        columns = {}
        for name in table.column_names:
            if name != "flywire_id":
                codes, values = _dictionary_codes(table.column(name))
                columns[name] = (codes, np.array(values, dtype=object))
        return cls(ids, columns, source)


# ====================================================================== reading files
def _annotation_dirs(connectome: Any = None) -> list[Path]:
    dirs: list[Path] = []
    src = getattr(connectome, "meta", {}).get("source_dir") if connectome is not None else None
    if src:
        dirs.append(Path(src))
    env = os.environ.get("BRAINFLY_DATA")
    if env:
        dirs.append(Path(env).expanduser())
    dirs += [downloads_dir(), cache_dir()]
    return [d for d in dict.fromkeys(dirs) if d.is_dir()]


def find_annotation_files(dirs: Iterable[str | Path], version: str | None = None) -> dict[str, Path]:
    """Annotation tables in *dirs* (first found per kind), skipping other FlyWire versions.

    Parameters
    ----------
    dirs : iterable of str or Path
        Folders to search, in order.
    version : str, optional
        The connectome's FlyWire version; a file whose name carries another version
        (e.g. ``classification_630.csv``) is skipped.

    Returns
    -------
    dict
        ``{"supplemental" | "classification" | "cell_types": path}``.
    """
    found: dict[str, Path] = {}
    for d in dirs:
        d = Path(d)
        if not d.is_dir():
            continue
        for p in sorted(d.iterdir()):
            for kind, rx in _ANNOTATION_KINDS.items():
                if kind in found or not rx.match(p.name) or not p.is_file():
                    continue
                v = file_version(p.name.removesuffix(".gz"))
                if version is not None and v is not None and v != version:
                    continue
                found[kind] = p
    return found


def _read_text_table(path: Path, sep: str) -> dict[str, Any]:
    """Every column of a CSV/TSV (gzip accepted) as a pyarrow string array, whitespace trimmed."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.csv as pcsv

    try:
        with (gzip.open(path, "rt", encoding="utf-8", newline="") if path.name.endswith(".gz")
              else open(path, encoding="utf-8", newline="")) as f:
            header = next(csv.reader(io.StringIO(f.readline()), delimiter=sep), [])
        table = pcsv.read_csv(
            path,
            parse_options=pcsv.ParseOptions(delimiter=sep),
            convert_options=pcsv.ConvertOptions(column_types={name: pa.string() for name in header},
                                                strings_can_be_null=False, quoted_strings_can_be_null=False),
        )
    except (OSError, UnicodeDecodeError, pa.ArrowInvalid) as exc:
        raise DataError(f"annotation table {path}: not readable ({str(exc).strip()[:200]})") from None
    return {name.strip(): pc.utf8_trim_whitespace(table.column(name).combine_chunks())
            for name in table.column_names}


def _keyed(cols: dict[str, Any], path: Path, id_col: str = "root_id") -> tuple[np.ndarray, np.ndarray]:
    """(ids, rows): the valid positive int64 root IDs of a table and their rows, first occurrence of each."""
    import pyarrow.compute as pc

    if id_col not in cols:
        raise DataError(f"annotation table {path}: no column {id_col!r} (got {list(cols)[:12]})")
    raw = cols[id_col]
    digits = pc.cast(pc.match_substring_regex(raw, r"^[0-9]{1,18}$"), "int8")
    rows = np.flatnonzero(_numpy_from_arrow(digits))
    ids = _numpy_from_arrow(pc.cast(raw.take(_arrow_from_numpy(rows)), "int64"))
    keep = ids > 0
    ids, rows = ids[keep], rows[keep]
    _, first = np.unique(ids, return_index=True)
    first = np.sort(first)
    return ids[first], rows[first]


def read_annotation_table(files: Mapping[str, Path], version: str | None = None, source: str = "") -> AnnotationTable:
    """Merge annotation tables into one :class:`AnnotationTable` (no cache).

    Parameters
    ----------
    files : mapping
        As returned by :func:`find_annotation_files` (``supplemental``,
        ``classification``, ``cell_types``).
    version : str, optional
        ``"630"`` uses the supplemental file's ``root_630`` column when it has one.
    source : str
        Label of the result.

    Returns
    -------
    AnnotationTable
        Columns among :data:`ANNOTATION_COLUMNS` plus ``additional_types``; empty strings
        count as missing; rows without a valid root ID are dropped. Where several files
        give a value, the Codex tables win over the supplemental file.
    """
    parts: list[tuple[np.ndarray, np.ndarray, dict[str, Any]]] = []  # lowest priority first
    if "supplemental" in files:
        path = Path(files["supplemental"])
        cols = _read_text_table(path, "\t")
        ids, rows = _keyed(cols, path, "root_630" if version == "630" and "root_630" in cols else "root_id")
        rename = {"cell_class": "class", "cell_sub_class": "sub_class"}
        if "hemilineage" not in cols and "ito_lee_hemilineage" in cols:
            rename["ito_lee_hemilineage"] = "hemilineage"
        cols = {rename.get(k, k): v for k, v in cols.items()}
        parts.append((ids, rows, {c: cols[c] for c in ANNOTATION_COLUMNS if c in cols}))
    if "classification" in files:
        path = Path(files["classification"])
        cols = _read_text_table(path, ",")
        ids, rows = _keyed(cols, path)
        parts.append((ids, rows, {c: cols[c] for c in ANNOTATION_COLUMNS if c in cols and c != "cell_type"}))
    if "cell_types" in files:
        path = Path(files["cell_types"])
        cols = _read_text_table(path, ",")
        ids, rows = _keyed(cols, path)
        want = {"primary_type": "cell_type"}
        extra = next((c for c in cols if c.startswith("additional_type")), None)
        if extra:
            want[extra] = "additional_types"
        parts.append((ids, rows, {new: cols[old] for old, new in want.items() if old in cols}))
    all_ids = np.unique(np.concatenate([p[0] for p in parts])) if parts else np.empty(0, np.int64)
    order_of = {c: k for k, c in enumerate(ANNOTATION_COLUMNS + ("additional_types",))}
    names = sorted(set(c for _, _, cols in parts for c in cols) | set(_BASE_COLUMNS), key=lambda c: order_of[c])
    columns: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for name in names:
        merged = np.full(all_ids.shape[0], -1, dtype=np.int32)
        values: dict[str, int] = {}
        for ids, rows, cols in parts:  # later parts overwrite where they have a value
            if name not in cols:
                continue
            codes, local = _dictionary_codes(cols[name].take(_arrow_from_numpy(rows)))
            remap = np.array([values.setdefault(v, len(values)) for v in local], dtype=np.int32)
            has = codes >= 0
            merged[np.searchsorted(all_ids, ids[has])] = remap[codes[has]]
        cats = np.array(list(values), dtype=object)
        order = np.argsort(cats.astype(str), kind="stable") if cats.size else np.empty(0, np.int64)
        rank = np.empty(order.shape[0], dtype=np.int32)
        rank[order] = np.arange(order.shape[0], dtype=np.int32)
        used = merged >= 0
        merged[used] = rank[merged[used]]
        columns[name] = (merged, cats[order])
    return AnnotationTable(all_ids, columns, source or ", ".join(Path(p).name for p in files.values()))


def read_annotations(files: Mapping[str, Path], version: str | None = None) -> Any:
    """Merge annotation tables into one DataFrame indexed by ``flywire_id`` (int64).

    Parameters
    ----------
    files : mapping
        As returned by :func:`find_annotation_files`.
    version : str, optional
        ``"630"`` uses the supplemental file's ``root_630`` column when it has one.

    Returns
    -------
    pandas.DataFrame
        Columns among :data:`ANNOTATION_COLUMNS` plus ``additional_types`` (categorical);
        missing values are NaN. Rows without a valid root ID are dropped. See
        :func:`read_annotation_table` (the same, without pandas).
    """
    return read_annotation_table(files, version).to_frame()


# ====================================================================== caching
_TABLES: dict[str, AnnotationTable] = {}


def load_annotation_table(files: Mapping[str, Path], version: str | None = None) -> AnnotationTable:
    """:func:`read_annotation_table`, cached by the files' SHA-256.

    In memory for this process, and on disk as parquet in
    ``cache_dir()/annotations/<key>.parquet`` (a cache entry that cannot be read is
    rebuilt; a cache folder that cannot be written is skipped).
    """
    digests = [f"{k}={file_sha256(p)[0]}" for k, p in sorted(files.items())]
    key = csr_key(_CACHE_FORMAT, str(version), *digests)
    table = _TABLES.get(key)
    if table is not None:
        return table
    source = ", ".join(Path(p).name for p in files.values())
    cache_file = cache_dir() / "annotations" / f"{key}.parquet"
    if cache_file.is_file():
        import pyarrow as pa
        import pyarrow.parquet as pq

        try:
            table = AnnotationTable.from_arrow(pq.ParquetFile(cache_file).read(), source)
        except (OSError, ValueError, KeyError, pa.ArrowException) as exc:
            log.warning("ignoring unreadable annotation cache %s (%s)", cache_file, exc)
    if table is None:
        table = read_annotation_table(files, version, source)
        arrow = table.to_arrow()
        try:
            import pyarrow.parquet as pq

            atomic_write(cache_file, lambda tmp: pq.write_table(arrow, tmp))
        except OSError as exc:
            log.debug("cannot cache annotations in %s: %s", cache_file, exc)
    _TABLES[key] = table
    return table


def shipped_annotations() -> AnnotationTable:
    """The FlyWire Codex v783 tables shipped with brainfly (package data, CC BY 4.0).

    Read on first use (cached like any annotation table). All 138,639 neurons of the v783
    model have a classification; 137,108 have a cell type.

    Returns
    -------
    AnnotationTable
    """
    files = {kind: SHIPPED_DIR / name for kind, (name, _) in SHIPPED_TABLES.items()}
    missing = [str(p) for p in files.values() if not p.is_file()]
    if missing:
        raise DataError(f"brainfly's shipped annotation tables are missing ({', '.join(missing)}): "
                        "reinstall brainfly")
    return load_annotation_table(files, SHIPPED_VERSION)


def attach_annotations(connectome: Any, dirs: Iterable[str | Path] | None = None) -> Any:
    """Find, read (cached) and attach annotation files to *connectome*.

    Parameters
    ----------
    connectome : Connectome
    dirs : iterable of str or Path, optional
        Folders to search; default: the data folder, ``$BRAINFLY_DATA``, the cache folder.

    Returns
    -------
    pandas.DataFrame or None
        The table now in ``connectome.annotations``; None when no file was found, in which
        case lookups of a v783 connectome use the shipped tables on first need (see
        :func:`annotation_table`).
    """
    version = connectome.meta.get("version")
    files = find_annotation_files(_annotation_dirs(connectome) if dirs is None else dirs, version)
    if not files:
        return None
    frame = load_annotation_table(files, version).restrict(connectome.flywire_ids).to_frame()
    connectome.annotations = frame
    connectome.meta["annotations"] = {k: str(p) for k, p in files.items()}
    return frame


def _shipped_applies(connectome: Any) -> bool:
    """The shipped v783 tables describe this connectome's IDs (v783, or a version not stated)."""
    return connectome.meta.get("version") in (None, SHIPPED_VERSION)


def annotation_table(connectome: Any) -> AnnotationTable | None:
    """The annotations that name *connectome*'s neurons, as an :class:`AnnotationTable`.

    ``connectome.annotations`` when files were attached; otherwise, for a connectome of
    v783 IDs or of unknown version, the shipped v783 tables (which hold other neurons too:
    look neurons up by ID); otherwise None.
    """
    ann = getattr(connectome, "annotations", None)
    if ann is not None and len(getattr(ann, "columns", ())):
        return ann if isinstance(ann, AnnotationTable) else AnnotationTable.from_frame(ann, "connectome.annotations")
    if _shipped_applies(connectome):
        return shipped_annotations()
    return None


# ====================================================================== other versions
_NEURON_LISTS: dict[tuple[str, int, int], np.ndarray] = {}


def _other_version_lists(connectome: Any) -> list[tuple[str, Path, np.ndarray]]:
    """Neuron lists of other FlyWire versions found in the data and cache folders."""
    version = connectome.meta.get("version")
    out: list[tuple[str, Path, np.ndarray]] = []
    seen: set[str] = set()
    for d in _annotation_dirs(connectome):
        for p in sorted(d.iterdir()):
            v = file_version(p)
            if not is_completeness_file(p) or v is None or v == version or v in seen or not p.is_file():
                continue
            st = p.stat()
            key = (str(p.resolve()), st.st_size, st.st_mtime_ns)
            if key not in _NEURON_LISTS:
                try:
                    _NEURON_LISTS[key] = np.sort(read_neuron_list(p))
                except Exception as exc:  # noqa: BLE001 - a hint source only; never fail the lookup on it
                    log.debug("cannot read %s for version hints: %s", p, exc)
                    continue
            seen.add(v)
            out.append((v, p, _NEURON_LISTS[key]))
    return out


def _missing_id_message(connectome: Any, fid: int, owner: str, what: str = "FlyWire ID") -> str:
    version = connectome.meta.get("version")
    this = f"v{version}" if version else "this dataset"
    msg = f"{owner}: {what} {fid} is not a neuron of connectome {connectome.label}"
    for v, path, ids in _other_version_lists(connectome):
        pos = np.searchsorted(ids, fid)
        if pos < ids.size and ids[pos] == fid:
            return (msg + f". It is a neuron of FlyWire v{v} ({path.name}) but not of {this}: root IDs change "
                    f"between versions; load the v{v} data (--data flywire-{v}) or look up the neuron's "
                    f"{this} ID (e.g. by cell type: 'type:NAME').")
    if not 10**17 <= fid < 10**18 and not connectome.synthetic:
        msg += " (FlyWire root IDs have 18 digits)"
    return msg


# ====================================================================== resolution
def _covered(connectome: Any) -> AnnotationTable | None:
    """The annotation table restricted to *connectome*'s neurons, None if it covers none."""
    table = annotation_table(connectome)
    if table is None:
        return None
    table = table.restrict(connectome.flywire_ids)
    return table if len(table) else None


def _match_column(connectome: Any, column: str, value: str, owner: str, spec: str) -> np.ndarray | None:
    """Model indices of neurons whose annotation *column* equals *value* (exact, then any case)."""
    table = annotation_table(connectome)
    if table is None:
        return None
    ids, matched = table.ids_where(column, value)
    ids = ids[np.isin(ids, connectome.flywire_ids)]
    if not ids.size:
        return None
    if len(matched) > 1:
        present = sorted(set(table.get(column, ids).tolist()))
        if len(present) > 1:
            raise UnknownNeuronError(f"{owner}: {spec!r} matches several {column} values ignoring case "
                                     f"({', '.join(map(repr, present[:8]))}); write one exactly")
    return np.sort(connectome.idx_of(ids))


def _no_annotations_hint(connectome: Any) -> str:
    if _covered(connectome) is not None:
        return ""
    if _shipped_applies(connectome):
        why = (f"the annotation tables brainfly ships name FlyWire v{SHIPPED_VERSION} IDs, and none of "
               f"{connectome.label}'s neurons is one")
    else:
        why = f"brainfly ships annotations for FlyWire v{SHIPPED_VERSION} IDs only"
    return (f" (no annotation tables cover these neurons, so cell types and classes are unknown: {why}; put "
            "FlyWire's Supplemental_file1_neuron_annotations.tsv, or Codex's classification.csv.gz and "
            "consolidated_cell_types.csv.gz, in the data folder or the cache folder)")


def _resolve_alias(connectome: Any, name: str, owner: str) -> np.ndarray:
    ids = PAPER_ALIASES[name]
    present = [f for f in ids if f in connectome]
    missing = [f for f in ids if f not in connectome]
    if not present:
        raise UnknownNeuronError(_missing_id_message(connectome, missing[0], owner, what=f"{name} (FlyWire ID)"))
    if missing:
        log.warning("%s: %s: FlyWire ID(s) %s not in %s; using %s", owner, name,
                    ", ".join(map(str, missing)), connectome.label, ", ".join(map(str, present)))
    return connectome.idx_of(present)


def _resolve_term(connectome: Any, term: str, owner: str, spec: str) -> np.ndarray:
    """Model indices of one term (no ``&``)."""
    term = term.strip()
    if term.isdigit():
        fid = int(term)
        if fid not in connectome:
            raise UnknownNeuronError(_missing_id_message(connectome, fid, owner))
        return connectome.idx_of([fid])
    if ":" in term:
        prefix, value = (s.strip() for s in term.split(":", 1))
        column = _PREFIX_ALIASES.get(prefix.lower(), prefix.lower())
        if column not in ANNOTATION_COLUMNS:
            choices = ["type"] + [c for c in ANNOTATION_COLUMNS]
            raise UnknownNeuronError(f"{owner}: {spec!r}: unknown annotation column {prefix!r}; use one of "
                                     f"{', '.join(c + ':' for c in choices)}.{suggest(prefix, choices)}")
        idx = _match_column(connectome, column, value, owner, spec)
        if idx is None:
            covered = _covered(connectome)
            values = covered.values(column) if covered is not None else []
            raise UnknownNeuronError(f"{owner}: no neuron of {connectome.label} has {column} {value!r}."
                                     f"{suggest(value, values)}{_no_annotations_hint(connectome)}")
        return idx
    if term in PAPER_ALIASES:
        return _resolve_alias(connectome, term, owner)
    folded = {k.lower(): k for k in PAPER_ALIASES}
    idx = _match_column(connectome, "cell_type", term, owner, spec)
    if idx is not None:
        return idx
    if term.lower() in folded:
        return _resolve_alias(connectome, folded[term.lower()], owner)
    covered = _covered(connectome)
    types = covered.values("cell_type") if covered is not None else []
    # a close paper name first (P8 -> P9), then close cell types
    hint = suggest(term, PAPER_ALIASES) or suggest(term, list(PAPER_ALIASES) + list(types))
    raise UnknownNeuronError(f"{owner}: unknown neuron name {term!r} in {connectome.label}: not a paper name "
                             f"({', '.join(PAPER_ALIASES)}) nor a cell type.{hint}"
                             f"{_no_annotations_hint(connectome)}")


def resolve_neurons(connectome: Any, specs: Iterable[int | str], owner: str = "neurons") -> np.ndarray:
    """Model indices (int64, in the order given, duplicates kept) of FlyWire IDs or names.

    Parameters
    ----------
    connectome : Connectome
    specs : iterable of int or str
        FlyWire IDs, paper names, cell types, ``column:value`` selectors, or ``&``-joined
        intersections of these (see the module docstring). A name that stands for a group
        gives its neurons in model-index order.
    owner : str
        Who asks (named in error messages), e.g. ``"stimulus set 0"``.

    Returns
    -------
    int64 array

    Raises
    ------
    UnknownNeuronError
        Naming *owner* and the unknown spec, with close matches, and saying so when an ID
        belongs to another FlyWire version whose neuron list is on disk.

    Examples
    --------
    >>> from brainfly.connectome import Connectome
    >>> net = Connectome.from_edges([720575940660219265, 720575940624963786, 5], [0], [1], [1.0])
    >>> resolve_neurons(net, ["MN9", 5, "LB3"], owner="example").tolist()
    [0, 2, 1]
    """
    out: list[np.ndarray] = []
    pending: list[int] = []  # consecutive IDs, looked up together (a screen resolves thousands)

    def flush() -> None:
        if not pending:
            return
        ids = np.array(pending, dtype=np.int64)
        idx = connectome.find(ids)
        missing = np.flatnonzero(idx < 0)
        if missing.size:
            raise UnknownNeuronError(_missing_id_message(connectome, int(ids[missing[0]]), owner))
        out.append(idx)
        pending.clear()

    for spec in specs:
        if isinstance(spec, (bool, np.bool_)):
            raise UnknownNeuronError(f"{owner}: {spec!r} is not a FlyWire ID or neuron name")
        if isinstance(spec, (int, np.integer)):
            fid = int(spec)
            if not -(2 ** 63) <= fid < 2 ** 63:
                raise UnknownNeuronError(_missing_id_message(connectome, fid, owner))
            pending.append(fid)
            continue
        flush()
        if not isinstance(spec, str) or not spec.strip():
            raise UnknownNeuronError(f"{owner}: {spec!r} is not a FlyWire ID or neuron name")
        terms = [t for t in spec.split("&") if t.strip()]
        idx = _resolve_term(connectome, terms[0], owner, spec)
        for term in terms[1:]:
            idx = np.intersect1d(idx, _resolve_term(connectome, term, owner, spec))
        if idx.size == 0:
            raise UnknownNeuronError(f"{owner}: no neuron of {connectome.label} matches all of {spec!r}")
        out.append(np.asarray(idx, dtype=np.int64))
    flush()
    return np.concatenate(out).astype(np.int64) if out else np.empty(0, dtype=np.int64)


# ====================================================================== names
def _alias_names(flywire_ids: np.ndarray) -> np.ndarray:
    """Paper name of each ID (:data:`PAPER_ALIASES`), ``""`` for the others."""
    alias_ids = np.array([f for ids in PAPER_ALIASES.values() for f in ids], dtype=np.int64)
    alias_names = np.array([name for name, ids in PAPER_ALIASES.items() for _ in ids], dtype=object)
    out = np.full(flywire_ids.shape[0], "", dtype=object)
    hit = np.flatnonzero(np.isin(flywire_ids, alias_ids))
    if hit.size:
        lookup = dict(zip(alias_ids.tolist(), alias_names.tolist()))
        out[hit] = [lookup[f] for f in flywire_ids[hit].tolist()]
    return out


def neuron_labels(flywire_ids: Any, annotations: Any = None) -> dict[str, np.ndarray]:
    """Display name, cell type and class of some neurons (numpy only, no pandas).

    Parameters
    ----------
    flywire_ids : array-like of int64, shape (n,)
    annotations : AnnotationTable or pandas.DataFrame, optional
        Where cell types and classes come from (e.g. ``connectome.annotations``); default:
        the shipped FlyWire v783 tables.

    Returns
    -------
    dict of str to object arrays of str, shape (n,)
        ``name`` (the paper name, e.g. ``MN9`` or ``P9``, else the cell type),
        ``cell_type`` and ``class``; ``""`` where unknown.

    Examples
    --------
    >>> labels = neuron_labels([720575940660219265, 720575940624963786, 5])
    >>> labels["name"].tolist(), labels["cell_type"].tolist()
    (['MN9', 'sugar_GRN', ''], ['CB0701', 'LB3', ''])
    """
    ids = np.asarray(flywire_ids, dtype=np.int64).reshape(-1)
    if annotations is None:
        table = shipped_annotations()
    elif isinstance(annotations, AnnotationTable):
        table = annotations
    else:
        table = AnnotationTable.from_frame(annotations, "annotations")
    cell_type = table.get("cell_type", ids)
    names = _alias_names(ids)
    unnamed = names == ""
    names[unnamed] = cell_type[unnamed]
    return {"name": names, "cell_type": cell_type, "class": table.get("class", ids)}


def neuron_names(connectome: Any) -> dict[int, str]:
    """Display names of the connectome's named neurons: paper name, else cell type.

    Parameters
    ----------
    connectome : Connectome

    Returns
    -------
    dict
        ``{flywire_id: name}``; neurons with neither a paper name nor a cell type are absent.
        Cell types come from :func:`annotation_table` (the shipped v783 tables when no
        files were attached).
    """
    ids = np.asarray(connectome.flywire_ids, dtype=np.int64)
    table = annotation_table(connectome)
    if table is None:
        names = _alias_names(ids)
    else:
        names = neuron_labels(ids, table)["name"]
    named = np.flatnonzero(names != "")
    return dict(zip(ids[named].tolist(), names[named].tolist()))
