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

Cell types and classes come from annotation tables found in the data folder, in
``$BRAINFLY_DATA``, or in the cache folder (optional; gzip accepted):

- FlyWire's ``Supplemental_file1_neuron_annotations.tsv`` (root_id, super_class,
  cell_class, cell_sub_class, cell_type, hemibrain_type, side, ...), and/or
- the Codex tables ``classification*.csv`` (root_id, flow, super_class, class, sub_class,
  hemilineage, side, nerve) and ``consolidated_cell_types*.csv`` (root_id, primary_type,
  additional_type(s)).

They are attached as ``connectome.annotations``: a DataFrame indexed by ``flywire_id``
(int64, the connectome's neurons only) with the columns ``cell_type``, ``super_class``,
``class``, ``side`` and any others the files give.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
import re
from typing import Any, Iterable

import numpy as np

from ..errors import UnknownNeuronError, suggest

__all__ = [
    "SUGAR_GRNS_783",
    "PAPER_ALIASES",
    "ANNOTATION_COLUMNS",
    "resolve_neurons",
    "neuron_names",
    "find_annotation_files",
    "read_annotations",
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

_SUPPLEMENTAL_RE = re.compile(r"^supplemental_file1_neuron_annotations.*\.tsv(\.gz)?$", re.IGNORECASE)
_CLASSIFICATION_RE = re.compile(r"^classification.*\.csv(\.gz)?$", re.IGNORECASE)
_CELL_TYPES_RE = re.compile(r"^consolidated_cell_types.*\.csv(\.gz)?$", re.IGNORECASE)
_ANNOTATION_KINDS = {"supplemental": _SUPPLEMENTAL_RE, "classification": _CLASSIFICATION_RE,
                     "cell_types": _CELL_TYPES_RE}


# ====================================================================== annotations
def _annotation_dirs(connectome: Any = None) -> list[Path]:
    from .cache import cache_dir, downloads_dir

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
    from .files import file_version

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


def _clean(series: Any) -> Any:
    s = series.astype("string").str.strip()
    return s.mask(s == "")


def read_annotations(files: dict[str, Path], version: str | None = None) -> Any:
    """Merge annotation tables into one DataFrame indexed by ``flywire_id`` (int64).

    Parameters
    ----------
    files : dict
        As returned by :func:`find_annotation_files`.
    version : str, optional
        ``"630"`` uses the supplemental file's ``root_630`` column when it has one.

    Returns
    -------
    pandas.DataFrame
        Columns among :data:`ANNOTATION_COLUMNS` plus ``additional_types``; missing values
        are NA. Rows without a valid root ID are dropped.
    """
    import pandas as pd

    from ..errors import DataError

    parts: list[Any] = []

    def read(path: Path, sep: str) -> Any:
        try:
            return pd.read_csv(path, sep=sep, dtype=str, keep_default_na=False, low_memory=False)
        except (ValueError, OSError, UnicodeDecodeError, pd.errors.ParserError) as exc:
            raise DataError(f"annotation table {path}: not readable ({str(exc).strip()[:200]})") from None

    def keyed(df: Any, path: Path, id_col: str = "root_id") -> Any:
        if id_col not in df.columns:
            raise DataError(f"annotation table {path}: no column {id_col!r} (got {list(df.columns)[:12]})")
        ids = pd.to_numeric(df[id_col], errors="coerce")
        keep = ids.notna() & (ids > 0)
        df = df.loc[keep.to_numpy()].copy()
        df.index = pd.Index(ids[keep].astype("int64").to_numpy(), name="flywire_id")
        return df[~df.index.duplicated(keep="first")]

    if "supplemental" in files:
        path = files["supplemental"]
        df = read(path, "\t")
        id_col = "root_630" if version == "630" and "root_630" in df.columns else "root_id"
        df = keyed(df, path, id_col)
        rename = {"cell_class": "class", "cell_sub_class": "sub_class"}
        if "hemilineage" not in df.columns and "ito_lee_hemilineage" in df.columns:
            rename["ito_lee_hemilineage"] = "hemilineage"
        df = df.rename(columns=rename)
        parts.append(df[[c for c in ANNOTATION_COLUMNS if c in df.columns]])
    if "classification" in files:
        path = files["classification"]
        df = keyed(read(path, ","), path)
        parts.append(df[[c for c in ANNOTATION_COLUMNS if c in df.columns and c != "cell_type"]])
    if "cell_types" in files:
        path = files["cell_types"]
        df = keyed(read(path, ","), path)
        cols = {"primary_type": "cell_type"}
        extra = next((c for c in df.columns if c.startswith("additional_type")), None)
        if extra:
            cols[extra] = "additional_types"
        parts.append(df[[c for c in cols if c in df.columns]].rename(columns=cols))
    if not parts:
        return pd.DataFrame(index=pd.Index([], dtype="int64", name="flywire_id"),
                            columns=["cell_type", "super_class", "class", "side"], dtype="string")
    out = parts[-1]
    for part in reversed(parts[:-1]):  # later tables (Codex) win; earlier ones fill gaps
        out = out.combine_first(part) if len(out) else part
    out = out.apply(_clean)
    for col in ("cell_type", "super_class", "class", "side"):
        if col not in out.columns:
            out[col] = pd.Series(pd.NA, index=out.index, dtype="string")
    out.index = out.index.astype("int64")
    out.index.name = "flywire_id"
    return out.sort_index()


def attach_annotations(connectome: Any, dirs: Iterable[str | Path] | None = None) -> Any:
    """Find, read (cached as parquet) and attach annotations to *connectome*.

    Parameters
    ----------
    connectome : Connectome
    dirs : iterable of str or Path, optional
        Folders to search; default: the data folder, ``$BRAINFLY_DATA``, the cache folder.

    Returns
    -------
    pandas.DataFrame or None
        The table now in ``connectome.annotations`` (None when no file was found).
    """
    from .._io import atomic_write
    from .cache import cache_dir, csr_key, file_sha256

    version = connectome.meta.get("version")
    files = find_annotation_files(_annotation_dirs(connectome) if dirs is None else dirs, version)
    if not files:
        return None
    import pandas as pd

    digests = [f"{k}={file_sha256(p)[0]}" for k, p in sorted(files.items())]
    cache_file = cache_dir() / "annotations" / f"{csr_key('annotations-v1', str(version), *digests)}.parquet"
    table = None
    if cache_file.is_file():
        try:
            table = pd.read_parquet(cache_file)
        except (OSError, ValueError) as exc:
            log.warning("ignoring unreadable annotation cache %s (%s)", cache_file, exc)
    if table is None:
        # categorical columns: a fraction of the memory, and read back from parquet ~5x faster
        fresh = read_annotations(files, version).astype("category")
        try:
            atomic_write(cache_file, lambda tmp: fresh.to_parquet(tmp))
            table = pd.read_parquet(cache_file)  # the same dtypes as every later load
        except (OSError, ValueError) as exc:
            log.debug("cannot cache annotations in %s: %s", cache_file, exc)
            table = fresh
    table = table[table.index.isin(connectome.flywire_ids)]
    connectome.annotations = table
    connectome.meta["annotations"] = {k: str(p) for k, p in files.items()}
    return table


# ====================================================================== other versions
_NEURON_LISTS: dict[tuple[str, int, int], np.ndarray] = {}


def _other_version_lists(connectome: Any) -> list[tuple[str, Path, np.ndarray]]:
    """Neuron lists of other FlyWire versions found in the data and cache folders."""
    from .files import file_version, is_completeness_file, read_neuron_list

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
def _annotation_table(connectome: Any) -> Any:
    ann = getattr(connectome, "annotations", None)
    return ann if ann is not None and len(getattr(ann, "columns", ())) else None


def _match_column(connectome: Any, column: str, value: str, owner: str, spec: str) -> np.ndarray | None:
    """Model indices of neurons whose annotation *column* equals *value* (exact, then any case)."""
    ann = _annotation_table(connectome)
    if ann is None or column not in ann.columns:
        return None
    col = ann[column]
    hit = (col == value).fillna(False).to_numpy(dtype=bool)
    if not hit.any():
        hit = (col.str.lower() == value.lower()).fillna(False).to_numpy(dtype=bool)
        if hit.any():
            found = sorted(set(col[hit].dropna().tolist()))
            if len(found) > 1:
                raise UnknownNeuronError(f"{owner}: {spec!r} matches several {column} values ignoring case "
                                         f"({', '.join(map(repr, found[:8]))}); write one exactly")
    if not hit.any():
        return None
    return np.sort(connectome.idx_of(ann.index.to_numpy()[hit]))


def _no_annotations_hint(connectome: Any) -> str:
    if _annotation_table(connectome) is not None:
        return ""
    return (" (no annotation tables are loaded, so cell types and classes are unknown: put FlyWire's "
            "Supplemental_file1_neuron_annotations.tsv, or Codex's classification.csv.gz and "
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
            ann = _annotation_table(connectome)
            values = ann[column].dropna().unique().tolist() if ann is not None and column in ann.columns else []
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
    ann = _annotation_table(connectome)
    names = list(PAPER_ALIASES)
    if ann is not None and "cell_type" in ann.columns:
        names += ann["cell_type"].dropna().unique().tolist()
    raise UnknownNeuronError(f"{owner}: unknown neuron name {term!r} in {connectome.label}: not a paper name "
                             f"({', '.join(PAPER_ALIASES)}) nor a cell type.{suggest(term, names)}"
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
    >>> import numpy as np
    >>> from brainfly.connectome import Connectome
    >>> net = Connectome.from_edges([720575940660219265, 5], [0], [1], [1.0])
    >>> resolve_neurons(net, ["MN9", 5], owner="example").tolist()
    [0, 1]
    """
    out: list[np.ndarray] = []
    for spec in specs:
        if isinstance(spec, (bool, np.bool_)):
            raise UnknownNeuronError(f"{owner}: {spec!r} is not a FlyWire ID or neuron name")
        if isinstance(spec, (int, np.integer)):
            fid = int(spec)
            if fid not in connectome:
                raise UnknownNeuronError(_missing_id_message(connectome, fid, owner))
            out.append(connectome.idx_of([fid]))
            continue
        if not isinstance(spec, str) or not spec.strip():
            raise UnknownNeuronError(f"{owner}: {spec!r} is not a FlyWire ID or neuron name")
        terms = [t for t in spec.split("&") if t.strip()]
        idx = _resolve_term(connectome, terms[0], owner, spec)
        for term in terms[1:]:
            idx = np.intersect1d(idx, _resolve_term(connectome, term, owner, spec))
        if idx.size == 0:
            raise UnknownNeuronError(f"{owner}: no neuron of {connectome.label} matches all of {spec!r}")
        out.append(np.asarray(idx, dtype=np.int64))
    return np.concatenate(out).astype(np.int64) if out else np.empty(0, dtype=np.int64)


def neuron_names(connectome: Any) -> dict[int, str]:
    """Display names of the connectome's named neurons: paper name, else cell type.

    Parameters
    ----------
    connectome : Connectome

    Returns
    -------
    dict
        ``{flywire_id: name}``; neurons with neither a paper name nor a cell type are absent.
    """
    names: dict[int, str] = {}
    ann = _annotation_table(connectome)
    if ann is not None and "cell_type" in ann.columns:
        types = ann["cell_type"].dropna()
        names.update(zip(types.index.astype("int64").tolist(), types.astype(str).tolist()))
    for alias, ids in PAPER_ALIASES.items():
        for fid in ids:
            if fid in connectome:
                names[fid] = alias
    return names
