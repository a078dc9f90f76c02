"""The canonical connectome files: names, pinned checksums, reading and verification.

The model's inputs are the two files prepared by Shiu et al. 2024
(github.com/philshiu/Drosophila_brain_model):

- a neuron list, ``Completeness_783.csv``: first column the FlyWire root ID (its row is the
  model index ``idx``), column ``Completed``;
- a connection list, ``Connectivity_783.parquet``: ``Presynaptic_ID``, ``Postsynaptic_ID``
  (int64 FlyWire IDs), ``Presynaptic_Index``, ``Postsynaptic_Index`` (rows of the neuron
  list), ``Connectivity`` (synapse count > 0), ``Excitatory`` (1 excitatory, 0 or -1
  inhibitory) and ``Excitatory x Connectivity`` (the signed count the model uses).

Everything read is verified (schema, index/ID consistency, ranges, signs, duplicates); a bad
file is refused with a :class:`~brainfly.errors.DataError` that names the file and the
problem. Files under a pinned name are also checked against the pinned size and SHA-256
(:data:`PINNED_FILES`). Reading is vectorized (row batches of the parquet file; no Python
loop over rows).
"""

from __future__ import annotations

from dataclasses import dataclass
import hashlib
import logging
from pathlib import Path
import re
from typing import Any, Callable

import numpy as np

from .._io import sha256_file
from ..errors import ChecksumError, DataError, DataNotFoundError

__all__ = [
    "PinnedFile",
    "PINNED_FILES",
    "CONNECTIVITY_COLUMNS",
    "SourceFiles",
    "sha256_file",
    "file_version",
    "is_completeness_file",
    "is_connectivity_file",
    "find_source_files",
    "read_neuron_list",
    "read_connectivity",
    "check_pinned",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PinnedFile:
    """A published file with its known size and SHA-256.

    Parameters
    ----------
    name : str
        File name in the paper's repository (and in the cache).
    version : str
        FlyWire materialization (``"783"`` or ``"630"``).
    kind : str
        ``"completeness"`` (neuron list) or ``"connectivity"`` (connection list).
    sha256 : str
        Hex digest of the file's bytes.
    size : int
        Size in bytes.
    n_rows : int
        Rows of data (neurons or connections).
    """

    name: str
    version: str
    kind: str
    sha256: str
    size: int
    n_rows: int


#: The published files (DESIGN.md), by file name.
PINNED_FILES: dict[str, PinnedFile] = {
    p.name: p
    for p in (
        PinnedFile("Completeness_783.csv", "783", "completeness",
                   "bbb847a4cc2caaa7a16349722d220c087317b946d148d4d592d94d250617a311", 3_327_347, 138_639),
        PinnedFile("Connectivity_783.parquet", "783", "connectivity",
                   "efeb23fb99098e9c390f6869969b2a121a2ee92c833cfc45ecb2c1d8e1af0347", 100_804_642, 15_091_983),
        PinnedFile("2023_03_23_completeness_630_final.csv", "630", "completeness",
                   "e6b71e17671a9bdb05f55e4bc6774640a1418cb7a05125e0fc994ad40f9bfdfb", 3_057_611, 127_400),
        PinnedFile("2023_03_23_connectivity_630_final.parquet", "630", "connectivity",
                   "94db8c650533bc36ffa3223f2e62325d5648b8d6bd31c3a4e1c804628c7557b3", 86_630_944, 14_687_178),
    )
}

#: Other names of the same published content. ``2025_Completeness_783.csv`` has CRLF line
#: endings: its content is checked against the pinned digest after normalizing them.
#: ``2025_Connectivity_783.parquet`` is verified when its bytes equal the pinned file, and
#: otherwise accepted on its content checks alone (its own digest is not published).
_ALIAS_OF: dict[str, str] = {
    "2025_Completeness_783.csv": "Completeness_783.csv",
    "2025_Connectivity_783.parquet": "Connectivity_783.parquet",
}

#: Required columns of a connectivity file and the kind of values each holds.
CONNECTIVITY_COLUMNS: dict[str, str] = {
    "Presynaptic_ID": "integer",
    "Postsynaptic_ID": "integer",
    "Presynaptic_Index": "integer",
    "Postsynaptic_Index": "integer",
    "Connectivity": "number",
    "Excitatory": "integer or boolean",
    "Excitatory x Connectivity": "number",
}

_COMPLETENESS_RE = re.compile(r"completeness.*\.csv$", re.IGNORECASE)
_CONNECTIVITY_RE = re.compile(r"connectivity.*\.parquet$", re.IGNORECASE)
_VERSION_RE = re.compile(r"(?<!\d)(\d{3})(?!\d)")
_BATCH_ROWS = 1 << 21


def file_version(path: str | Path) -> str | None:
    """FlyWire version written in a file name (``"783"``, ``"630"``), or None.

    >>> file_version("2023_03_23_connectivity_630_final.parquet")
    '630'
    >>> file_version("Completeness_synthetic.csv") is None
    True
    """
    m = _VERSION_RE.findall(Path(path).name)
    return m[-1] if m else None


def is_completeness_file(path: str | Path) -> bool:
    """True for a neuron-list file name (``*completeness*.csv``, any case)."""
    name = Path(path).name
    return not name.startswith(".") and bool(_COMPLETENESS_RE.search(name))


def is_connectivity_file(path: str | Path) -> bool:
    """True for a connection-list file name (``*connectivity*.parquet``, any case)."""
    name = Path(path).name
    return not name.startswith(".") and bool(_CONNECTIVITY_RE.search(name))


@dataclass(frozen=True)
class SourceFiles:
    """The pair of files a connectome is built from.

    Parameters
    ----------
    completeness : Path
        Neuron list (CSV).
    connectivity : Path
        Connection list (parquet).
    version : str or None
        FlyWire version read from the file names (None for unversioned, e.g. synthetic, files).
    """

    completeness: Path
    connectivity: Path
    version: str | None


def _name_rank(path: Path) -> tuple[int, str]:
    """Prefer the paper repository's own names, then the 2025_ names, then anything else."""
    if path.name in PINNED_FILES:
        return (0, path.name)
    if path.name in _ALIAS_OF:
        return (1, path.name)
    return (2, path.name)


def find_source_files(folder: str | Path, version: str | None = None) -> SourceFiles:
    """Find the neuron list and connection list in *folder*.

    Parameters
    ----------
    folder : str or Path
        A folder holding a ``*completeness*.csv`` and a ``*connectivity*.parquet`` file.
    version : str, optional
        FlyWire version wanted (``"783"``, ``"630"``). Without it, a folder holding
        several versions gives v783 (the choice is logged).

    Returns
    -------
    SourceFiles

    Raises
    ------
    DataNotFoundError
        If the folder does not exist or lacks one of the two files (of that version).
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise DataNotFoundError(f"connectome data folder {folder}: does not exist or is not a folder")
    entries = sorted(folder.iterdir())
    comps = [p for p in entries if p.is_file() and is_completeness_file(p)]
    conns = [p for p in entries if p.is_file() and is_connectivity_file(p)]
    expected = ("expected a neuron list (Completeness_783.csv, 2025_Completeness_783.csv or "
                "2023_03_23_completeness_630_final.csv) and a connection list (Connectivity_783.parquet, "
                "2025_Connectivity_783.parquet or 2023_03_23_connectivity_630_final.parquet)")
    if version is not None:
        comps = [p for p in comps if file_version(p) == version]
        conns = [p for p in conns if file_version(p) == version]
    if not comps or not conns:
        have = ", ".join(p.name for p in entries if p.is_file()) or "no files"
        what = f"v{version} " if version else ""
        raise DataNotFoundError(
            f"connectome data folder {folder}: no {what}"
            f"{'neuron list' if not comps else 'connection list'} found ({expected}; it holds: {have})")
    if len(comps) == 1 and len(conns) == 1:
        c, k = comps[0], conns[0]
        vc, vk = file_version(c), file_version(k)
        if vc is not None and vk is not None and vc != vk:
            raise DataError(f"connectome data folder {folder}: {c.name} (v{vc}) and {k.name} (v{vk}) "
                            "are of different FlyWire versions; put one version's pair in the folder")
        return SourceFiles(c, k, vc or vk)
    # several candidates: pair them by version
    versions = sorted({file_version(p) for p in comps} & {file_version(p) for p in conns} - {None})
    if not versions:
        raise DataError(f"connectome data folder {folder}: several neuron or connection lists "
                        f"({', '.join(p.name for p in comps + conns)}) and no version to pair them by; "
                        "keep one pair per folder")
    chosen = "783" if "783" in versions else versions[-1]
    if len(versions) > 1:
        log.info("folder %s holds FlyWire versions %s; using v%s (ask for another with the dataset "
                 "name flywire-<version> and BRAINFLY_DATA=%s)", folder, ", ".join(versions), chosen, folder)
    c = min((p for p in comps if file_version(p) == chosen), key=_name_rank)
    k = min((p for p in conns if file_version(p) == chosen), key=_name_rank)
    return SourceFiles(c, k, chosen)


# ------------------------------------------------------------------ checksums
def check_pinned(path: str | Path, sha256: str, size: int) -> str:
    """Check a file against its pinned size and SHA-256 when its name is a published one.

    Parameters
    ----------
    path : str or Path
        The file.
    sha256 : str
        Its SHA-256 (hex), computed by the caller (usually from the hash index).
    size : int
        Its size in bytes.

    Returns
    -------
    str
        ``"verified"`` (matches the pinned file), or ``"unpinned"`` (no published digest
        for this name).

    Raises
    ------
    ChecksumError
        If the name is a published one and size or digest differ.
    """
    path = Path(path)
    pin = PINNED_FILES.get(path.name)
    hint = (" The file is truncated, corrupt or a different file: delete it and download it again "
            "(`brainfly data download`), or pass verify_checksums=False if you changed it on purpose.")
    if pin is not None:
        if size != pin.size:
            raise ChecksumError(f"connectome file {path}: size {size:,} bytes, expected {pin.size:,} bytes "
                                f"(the published {pin.name}).{hint}")
        if sha256 != pin.sha256:
            raise ChecksumError(f"connectome file {path}: SHA-256 {sha256}, expected {pin.sha256} "
                                f"(the published {pin.name}).{hint}")
        return "verified"
    alias = _ALIAS_OF.get(path.name)
    if alias is None:
        return "unpinned"
    pin = PINNED_FILES[alias]
    if sha256 == pin.sha256:
        return "verified"
    if pin.kind == "completeness":
        # same content with CRLF line endings?
        data = path.read_bytes().replace(b"\r\n", b"\n")
        if len(data) == pin.size and hashlib.sha256(data).hexdigest() == pin.sha256:
            return "verified"
        raise ChecksumError(f"connectome file {path}: its content (line endings normalized) differs from "
                            f"the published {pin.name} (SHA-256 {pin.sha256}).{hint}")
    return "unpinned"


# ------------------------------------------------------------------ neuron list
def _read_neuron_list_fast(path: Path) -> np.ndarray | None:
    """The common case (a well-formed file) parsed natively; None sends it to the checking reader."""
    import pandas as pd

    try:
        df = pd.read_csv(path, index_col=0, encoding="utf-8")
    except Exception:  # noqa: BLE001 - any failure: the careful reader explains it
        return None
    idx = df.index
    if (df.shape[0] == 0 or idx.dtype != np.int64 or str(idx.name or "").strip() not in ("", "root_id", "flywire_id", "id")
            or list(df.columns) not in (["Completed"], []) or (df.shape[1] and df["Completed"].dtype != bool)):
        return None
    ids = idx.to_numpy(dtype=np.int64)
    if ids.min() <= 0 or np.unique(ids).size != ids.size:
        return None
    return ids


def read_neuron_list(path: str | Path) -> np.ndarray:
    """Read a neuron list (Completeness CSV) and return its FlyWire IDs in model-index order.

    Parameters
    ----------
    path : str or Path
        CSV whose first column holds the FlyWire root IDs (header empty, ``root_id`` or
        ``flywire_id``); an optional ``Completed`` column must hold booleans. LF or CRLF
        line endings.

    Returns
    -------
    int64 array, shape (n_neurons,)

    Raises
    ------
    DataError
        If the file is not such a CSV, is truncated, or holds duplicate or invalid IDs.
    """
    import pandas as pd

    path = Path(path)
    fast = _read_neuron_list_fast(path)
    if fast is not None:
        return fast
    try:
        df = pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8")
    except (ValueError, UnicodeDecodeError, pd.errors.ParserError) as exc:
        raise DataError(f"neuron list {path}: not a readable CSV file ({exc.__class__.__name__}: "
                        f"{str(exc).strip()[:200]}); expected a Completeness CSV (root ID, Completed)") from None
    if df.shape[1] == 0 or df.shape[0] == 0:
        raise DataError(f"neuron list {path}: empty (expected one row per neuron: root ID, Completed)")
    first = str(df.columns[0]).strip()
    if first not in ("", "Unnamed: 0", "root_id", "flywire_id", "id"):
        raise DataError(f"neuron list {path}: first column is {first!r}, expected the FlyWire root IDs "
                        "(header empty, 'root_id' or 'flywire_id') as in Completeness_783.csv")
    raw = df.iloc[:, 0].str.strip()
    ok = raw.str.fullmatch(r"\d{1,19}")
    if not bool(ok.all()):
        row = int(np.flatnonzero(~ok.to_numpy())[0])
        raise DataError(f"neuron list {path}: row {row + 1} has root ID {raw.iloc[row]!r}, expected a "
                        "positive integer (file truncated or corrupt?)")
    try:
        ids = raw.astype(np.uint64).to_numpy()
    except (OverflowError, ValueError):
        raise DataError(f"neuron list {path}: a root ID does not fit in int64") from None
    if ids.size and ids.max() > np.iinfo(np.int64).max:
        raise DataError(f"neuron list {path}: a root ID does not fit in int64")
    ids = ids.astype(np.int64)
    if ids.size and ids.min() <= 0:
        row = int(np.flatnonzero(ids <= 0)[0])
        raise DataError(f"neuron list {path}: row {row + 1} has root ID {int(ids[row])}, expected a positive "
                        "integer (FlyWire root IDs are > 0; file corrupt?)")
    if "Completed" in df.columns:
        comp = df["Completed"].str.strip()
        good = comp.isin(["True", "False", "true", "false", "1", "0", "TRUE", "FALSE"])
        if not bool(good.all()):
            row = int(np.flatnonzero(~good.to_numpy())[0])
            raise DataError(f"neuron list {path}: row {row + 1} has Completed={comp.iloc[row]!r}, expected "
                            "True or False (file truncated or corrupt?)")
    uniq, counts = np.unique(ids, return_counts=True)
    if uniq.size != ids.size:
        dup = uniq[counts > 1]
        raise DataError(f"neuron list {path}: {dup.size} duplicate root ID(s), e.g. "
                        f"{', '.join(str(int(d)) for d in dup[:5])}; each neuron must appear once")
    return ids


# ------------------------------------------------------------------ connection list
def _check_schema(path: Path, schema: Any) -> None:
    import pyarrow.types as pat

    names = list(schema.names)
    missing = [c for c in CONNECTIVITY_COLUMNS if c not in names]
    if missing:
        raise DataError(f"connection list {path}: missing column(s) {missing}; expected columns "
                        f"{list(CONNECTIVITY_COLUMNS)} (got {names})")
    for col, kind in CONNECTIVITY_COLUMNS.items():
        t = schema.field(col).type
        if kind == "integer":
            ok = pat.is_integer(t)
        elif kind == "number":
            ok = pat.is_integer(t) or pat.is_floating(t)
        else:
            ok = pat.is_integer(t) or pat.is_boolean(t)
        if not ok:
            raise DataError(f"connection list {path}: column {col!r} has type {t}, expected {kind}")


def _bad_row(mask: np.ndarray, offset: int) -> int:
    return offset + int(np.flatnonzero(mask)[0]) + 1


def read_connectivity(
    path: str | Path,
    flywire_ids: np.ndarray,
    *,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Read and verify a connection list against the neuron list; return CSR arrays.

    Parameters
    ----------
    path : str or Path
        Parquet file with the columns of :data:`CONNECTIVITY_COLUMNS`.
    flywire_ids : int64 array, shape (n_neurons,)
        The neuron list (model-index order) the indices refer to.
    progress : callable, optional
        Called as ``progress(rows_done, rows_total)`` after each batch.

    Returns
    -------
    indptr : int64 array, shape (n_neurons + 1,)
    post_idx : int32 array, shape (n_connections,)
    weight : float64 array, shape (n_connections,)
        Signed synapse counts, presynaptic-major (stable: file order within a neuron).

    Raises
    ------
    DataError
        Not a parquet file, truncated, wrong schema, nulls, index out of range, index and
        ID disagreeing with the neuron list, Connectivity <= 0, or sign and weight disagreeing.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = Path(path)
    n = int(flywire_ids.shape[0])
    try:
        pf = pq.ParquetFile(path)
        schema = pf.schema_arrow
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise DataError(f"connection list {path}: not a readable parquet file ({str(exc).strip()[:200]}); "
                        "the file is corrupt or truncated: delete it and get it again") from None
    _check_schema(path, schema)
    total = int(pf.metadata.num_rows)
    pre = np.empty(total, dtype=np.int32)
    post = np.empty(total, dtype=np.int32)
    weight = np.empty(total, dtype=np.float64)
    pos = 0
    try:
        batches = pf.iter_batches(batch_size=_BATCH_ROWS, columns=list(CONNECTIVITY_COLUMNS))
        for batch in batches:
            m = batch.num_rows
            if pos + m > total:
                raise DataError(f"connection list {path}: more rows than its metadata says ({total:,})")
            cols: dict[str, np.ndarray] = {}
            for name in CONNECTIVITY_COLUMNS:
                arr = batch.column(name)
                if arr.null_count:
                    bad = np.asarray(arr.is_null().to_numpy(zero_copy_only=False))
                    raise DataError(f"connection list {path}: column {name!r} is empty (null) in row "
                                    f"{_bad_row(bad, pos)}")
                cols[name] = arr.to_numpy(zero_copy_only=False)
            _verify_batch(path, cols, flywire_ids, n, pos)
            pre[pos:pos + m] = cols["Presynaptic_Index"]
            post[pos:pos + m] = cols["Postsynaptic_Index"]
            weight[pos:pos + m] = cols["Excitatory x Connectivity"]
            pos += m
            if progress is not None:
                progress(pos, total)
    except DataError:
        raise
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise DataError(f"connection list {path}: unreadable after row {pos:,} ({str(exc).strip()[:200]}); "
                        "the file is corrupt or truncated: delete it and get it again") from None
    if pos != total:
        raise DataError(f"connection list {path}: {pos:,} rows read, its metadata says {total:,} (truncated?)")
    return _to_csr(pre, post, weight, n)


def _verify_batch(path: Path, cols: dict[str, np.ndarray], flywire_ids: np.ndarray, n: int, pos: int) -> None:
    """Vectorized consistency checks of one batch of connections (rows pos+1 ...)."""
    for side in ("Presynaptic", "Postsynaptic"):
        idx = cols[f"{side}_Index"]
        bad = (idx < 0) | (idx >= n)
        if bad.any():
            r = _bad_row(bad, pos)
            raise DataError(f"connection list {path}: {side}_Index {int(idx[r - pos - 1])} in row {r} is out "
                            f"of range (expected 0..{n - 1}, the rows of the neuron list)")
        ids = cols[f"{side}_ID"].astype(np.int64, copy=False)
        bad = flywire_ids[idx] != ids
        if bad.any():
            r = _bad_row(bad, pos)
            i = int(idx[r - pos - 1])
            raise DataError(f"connection list {path}: row {r} has {side}_Index {i} and {side}_ID "
                            f"{int(ids[r - pos - 1])}, but row {i} of the neuron list is "
                            f"{int(flywire_ids[i])} (connection list and neuron list do not belong together)")
    conn = cols["Connectivity"]
    bad = ~(conn > 0)
    if bad.any():
        r = _bad_row(bad, pos)
        raise DataError(f"connection list {path}: Connectivity {conn[r - pos - 1]} in row {r}, expected a "
                        "synapse count > 0")
    exc = cols["Excitatory"]
    if exc.dtype != np.bool_:
        bad = (exc < -1) | (exc > 1)
        if bad.any():
            r = _bad_row(bad, pos)
            raise DataError(f"connection list {path}: Excitatory {exc[r - pos - 1]} in row {r}, expected 1 "
                            "(excitatory) or 0/-1 (inhibitory)")
    sign = np.where(exc > 0, 1.0, -1.0)
    signed = cols["Excitatory x Connectivity"]
    bad = signed != conn * sign
    if bad.any():
        r = _bad_row(bad, pos)
        k = r - pos - 1
        raise DataError(f"connection list {path}: row {r} has 'Excitatory x Connectivity' {signed[k]}, "
                        f"expected Connectivity {conn[k]} x {'+1' if exc[k] > 0 else '-1'} (Excitatory={exc[k]})")


def _to_csr(pre: np.ndarray, post: np.ndarray, weight: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sort connections by presynaptic index (stable) and build the row pointer."""
    counts = np.bincount(pre, minlength=n).astype(np.int64)
    indptr = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(counts, out=indptr[1:])
    if pre.size > 1 and bool(np.any(pre[1:] < pre[:-1])):
        order = np.argsort(pre, kind="stable")
        post = post[order]
        weight = weight[order]
    return indptr, np.ascontiguousarray(post, dtype=np.int32), np.ascontiguousarray(weight, dtype=np.float64)
