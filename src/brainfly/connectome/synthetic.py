"""Synthetic connectomes in the canonical format, for scale, speed and tests without real data.

The real FlyWire connectivity cannot be reached from every machine; this module builds a
stand-in of the same size and shape and writes it in the files of the paper's repository
(Shiu et al. 2024, ``philshiu/Drosophila_brain_model``):

- ``Completeness_synthetic.csv``: index = FlyWire root ID (model index = row order),
  column ``Completed`` (bool);
- ``Connectivity_synthetic.parquet``: ``Presynaptic_ID``, ``Postsynaptic_ID``,
  ``Presynaptic_Index``, ``Postsynaptic_Index``, ``Connectivity`` (synapse count >= 1),
  ``Excitatory`` (0/1), ``Excitatory x Connectivity`` (signed count), all int64;
- an empty marker file ``SYNTHETIC`` and ``synthetic.json`` (generator parameters, seed,
  statistics).

Everything built here is labelled synthetic (``Connectome.synthetic = True``, name
``synthetic-v1-seed{seed}``); results on it say nothing about the fly.

Structure (all vectorized numpy, deterministic by seed):

1. **Background**: a directed random graph with heavy-tailed out- and in-degrees
   (log-normal propensities; mean out-degree 108.9 = 15,091,983 / 138,639 as in v783),
   no self-connections and no duplicate (pre, post) pairs, and heavy-tailed synapse counts
   (truncated power law ``P(k) ~ k**-a``, k = 1 .. ``max_synapses``, mean about 3.6:
   most connections have 1-2 synapses, a few have hundreds). The sign of a connection is
   its presynaptic neuron's (Dale's law); about a third of the connections are inhibitory
   (GABA/Glu in FlyWire), the rest excitatory (ACh and others), as in v783.
2. **Embedded sensorimotor pathways**: the 21 sugar GRNs project with strong,
   multi-synapse connections onto a cascade of about 150 neurons in five layers
   (excitatory with 15 % inhibitory neurons, some recurrence within layers) that ends on
   the motor neuron MN9; the GRNs also reach the deeper layers directly, which anchors
   every layer's rate to the stimulus (a pure chain of equal layers is bistable and, seed
   to seed, either fades out or saturates). The P9 pair drives a small cascade of its own
   onto the same premotor layer. Every pathway neuron is also part of the background, so
   the activity spreads into a few hundred other neurons and stops there.
3. **A recurrent excitatory core** of 2,000 neurons (25 core inputs each, median 12
   synapses) fed by 2,000 "olfactory" input neurons. It stays silent in the sugar
   experiment, but a strong broad stimulus ignites it into a self-sustaining state, as
   olfactory receptor neurons do in the real model (v783: about 450k spikes/s). To see
   it, stimulate the inputs listed in ``connectome.meta["pathways"]["olfactory_idx"]``
   (model indices; their FlyWire IDs are ``connectome.flywire_ids[...]``) at 100 Hz for
   0.2 s: the activity goes on after the stimulus ends (see :data:`CALIBRATION`).

A random background alone either stays silent or explodes; the pathways give the sugar
experiment activity of the real brain's order while the background stays quiet.

The knobs (:class:`SyntheticParams`) were calibrated with
``benchmarks/calibrate_synthetic.py`` (sugar GRNs at 200 Hz, 1 s trials); the figures
measured are in :data:`CALIBRATION`.

Neuron IDs: when the v783 neuron list (``Completeness_783.csv`` or
``2025_Completeness_783.csv``) is at hand, its real IDs are reused in its order;
otherwise synthetic int64 IDs are drawn that always include the paper's named neurons
(:data:`brainfly.experiment.SUGAR_GRNS_783` and the IDs of
:data:`brainfly.connectome.lookup.PAPER_ALIASES`), so the built-in experiments run.

Units: synapse counts are integers (multiply by ``w_syn`` for volts); no times here.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
import hashlib
import json
import logging
import os
from pathlib import Path
import shutil
import sys
import tempfile
import time
from typing import Any

import numpy as np

from ..errors import DataError, ValidationError
from .lookup import PAPER_ALIASES, SUGAR_GRNS_783
from .network import Connectome

__all__ = [
    "GENERATOR_VERSION",
    "SYNTHETIC_FILES",
    "V783_FIGURES",
    "CALIBRATION",
    "SyntheticParams",
    "generate_synthetic",
    "write_synthetic",
    "ensure_synthetic",
    "find_neuron_list",
    "named_neuron_ids",
    "synthetic_statistics",
]

log = logging.getLogger(__name__)

#: Version of the generator; part of the folder name, bumped when the output changes.
GENERATOR_VERSION = "v1"

#: File names written by :func:`write_synthetic`.
SYNTHETIC_FILES = {
    "neurons": "Completeness_synthetic.csv",
    "connectivity": "Connectivity_synthetic.parquet",
    "marker": "SYNTHETIC",
    "meta": "synthetic.json",
}

#: Figures of the real v783 connectome (Shiu et al. files) that the generator imitates.
V783_FIGURES = {
    "n_neurons": 138_639,
    "n_connections": 15_091_983,
    "n_synapses": 54_500_000,  # about; 3.6 synapses per connection
    "mean_out_degree": 15_091_983 / 138_639,
}

#: Activity of the sugar experiment (21 sugar GRNs at 200 Hz, 1 s trials) on the
#: full-size synthetic connectome, as measured by ``benchmarks/calibrate_synthetic.py``,
#: next to the real v783 figures (Brian2: 16.4-17.0k spikes, 373-396 active neurons).
CALIBRATION: dict[str, Any] = {
    "experiment": "21 sugar GRNs at 200 Hz, 1 s trials (built-in 'sugar')",
    "real_v783_brian2": {"spikes_per_trial_s": "16.4k-17.0k", "active_per_trial_s": "373-396",
                         "mn9_hz": "about 93 (v630)"},
    "event_engine_5_trials": {
        "seed0": {"spikes_per_trial_s": 16687, "active_per_trial_s": 358, "mn9_hz": 85},
        "seed1": {"spikes_per_trial_s": 15022, "active_per_trial_s": 353, "mn9_hz": 70},
        "seed2": {"spikes_per_trial_s": 16135, "active_per_trial_s": 417, "mn9_hz": 81},
    },
    "private_loop_seed0_3_trials": {"spikes_per_trial_s": 17018, "active_per_trial_s": 360, "mn9_hz": 87},
    "sugar_runaway": "none: 4 spikes 10-100 ms after the stimulus ends, none later; the core stays silent",
    "olfactory_inputs_100hz_0.2s_seed0": {
        "spikes_per_s_during": "about 700k-870k", "spikes_per_s_after_stimulus": "about 380k, sustained",
        "active_neurons": 16341,
    },
}

_NEURON_LIST_NAMES = ("Completeness_783.csv", "2025_Completeness_783.csv")
_ID_LOW = 720_575_940_500_000_000  # synthetic IDs are drawn in FlyWire's range
_ID_HIGH = 720_575_940_700_000_000


@dataclass(frozen=True)
class SyntheticParams:
    """Knobs of the generator (defaults: full size, calibrated).

    Parameters
    ----------
    n_neurons : int
        Number of neurons (138,639 as in v783) when no neuron list is given.
    mean_out_degree : float
        Mean number of connections per neuron (v783: 108.86). For small networks it is
        capped at ``max_density * (n_neurons - 1)``.
    max_density : float
        Cap of the connection density for small networks (fraction of all ordered pairs).
    out_degree_sigma, in_degree_sigma : float
        Sigma of the log-normal propensities that make out- and in-degrees heavy-tailed.
    synapse_exponent : float
        Exponent ``a`` of the background synapse counts, ``P(k) ~ k**-a``.
    max_synapses : int
        Largest synapse count of one connection.
    inhibitory_share : float
        Share of connections that are inhibitory (v783: about a third, GABA and Glu).
    pathway_layers : tuple of int
        Sizes (full-size network) of the layers of the sugar cascade, GRNs -> ... -> MN9.
        Scaled with ``n_neurons`` for smaller networks.
    pathway_fan_in : int
        Inputs from the previous layer per pathway neuron.
    grn_fan_in : int
        Sugar GRNs converging on each neuron of the first layer.
    pathway_synapses : float
        Median synapse count of the feedforward pathway connections.
    grn_synapses : float
        Median synapse count of the GRN -> first layer connections.
    skip_fan_in, skip_synapses : int, float
        Sugar GRNs converging directly on each neuron of the deeper layers, and their median
        synapse count. This drive from the stimulus anchors every layer's rate, so the
        cascade neither dies out nor grows from layer to layer (a pure chain of equal
        layers is bistable: seed to seed it either fades or saturates).
    motor_fan_in, motor_synapses : int, float
        Premotor inputs onto each MN9 neuron and their median synapse count.
    recurrent_fan_in, recurrent_synapses : int, float
        Recurrent inputs within a layer per pathway neuron and their median synapse count.
    pathway_inhibitory : float
        Fraction of pathway neurons that are inhibitory.
    pathway_sigma : float
        Sigma of the log-normal spread of pathway synapse counts.
    p9_layers : tuple of int
        Sizes of the P9 cascade (ends on the premotor layer).
    p9_synapses : float
        Median synapse count of the P9 cascade connections.
    core_size, core_fan_in, core_synapses : int, int, float
        A recurrent excitatory core: each of ``core_size`` neurons receives ``core_fan_in``
        connections from other core neurons (median ``core_synapses``). It is silent
        unless ignited (its mean rate must pass about 35 Hz), then sustains itself at
        about 200 Hz: the analogue of the real brain's self-sustaining state under
        olfactory receptor neuron stimulation.
    olfactory_size, olfactory_fan_in, olfactory_synapses : int, int, float
        "Olfactory" input neurons that project onto the core (``olfactory_fan_in`` per
        core neuron); stimulating them strongly ignites the core.
    """

    n_neurons: int = 138_639
    mean_out_degree: float = 15_091_983 / 138_639
    max_density: float = 0.1
    out_degree_sigma: float = 1.1
    in_degree_sigma: float = 1.0
    synapse_exponent: float = 2.12
    max_synapses: int = 2000
    inhibitory_share: float = 0.33
    pathway_layers: tuple[int, ...] = (25, 40, 40, 30, 20)
    pathway_fan_in: int = 8
    grn_fan_in: int = 6
    pathway_synapses: float = 7.0
    grn_synapses: float = 15.0
    skip_fan_in: int = 3
    skip_synapses: float = 11.0
    motor_fan_in: int = 15
    motor_synapses: float = 36.0
    recurrent_fan_in: int = 3
    recurrent_synapses: float = 4.0
    pathway_inhibitory: float = 0.15
    pathway_sigma: float = 0.5
    p9_layers: tuple[int, ...] = (20, 20)
    p9_synapses: float = 30.0
    core_size: int = 2000
    core_fan_in: int = 25
    core_synapses: float = 12.0
    olfactory_size: int = 2000
    olfactory_fan_in: int = 5
    olfactory_synapses: float = 10.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "pathway_layers", tuple(int(x) for x in self.pathway_layers))
        object.__setattr__(self, "p9_layers", tuple(int(x) for x in self.p9_layers))
        for f in fields(self):
            v = getattr(self, f.name)
            vals = v if isinstance(v, tuple) else (v,)
            for x in vals:
                if isinstance(x, bool) or not isinstance(x, (int, float)) or not np.isfinite(x) or x < 0:
                    raise ValidationError(f"SyntheticParams.{f.name}: must be a finite number >= 0 (got {v!r})")
        if self.n_neurons < 100:
            raise ValidationError(
                f"SyntheticParams.n_neurons: must be >= 100 to hold the named neurons and pathways "
                f"(got {self.n_neurons})"
            )
        if not 0 <= self.inhibitory_share < 1:
            raise ValidationError(
                f"SyntheticParams.inhibitory_share: must be in [0, 1) (got {self.inhibitory_share})"
            )
        if self.synapse_exponent <= 1 or self.max_synapses < 1:
            raise ValidationError(
                "SyntheticParams.synapse_exponent: must be > 1 and max_synapses >= 1 "
                f"(got {self.synapse_exponent}, {self.max_synapses})"
            )
        if not self.pathway_layers or min(self.pathway_layers) < 1:
            raise ValidationError(f"SyntheticParams.pathway_layers: needs layers of >= 1 neuron "
                                  f"(got {self.pathway_layers})")

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-compatible dict of the parameters."""
        d = asdict(self)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}


# ---------------------------------------------------------------------------- helpers
def _rng(seed: int, stream: str) -> np.random.Generator:
    """An independent generator per component, so changing one leaves the others intact."""
    tag = int.from_bytes(hashlib.sha256(stream.encode()).digest()[:8], "little")
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence([int(seed), tag])))


def named_neuron_ids() -> dict[str, tuple[int, ...]]:
    """The paper's named neurons that every synthetic connectome contains.

    Returns
    -------
    dict of str to tuple of int
        ``"sugar_grns"`` (the 21 v783 sugar GRNs) and each alias of
        :data:`~brainfly.connectome.lookup.PAPER_ALIASES` (MN9, P9, aDN1, DN2, aBN1),
        FlyWire IDs (int64).
    """
    out: dict[str, tuple[int, ...]] = {"sugar_grns": tuple(int(i) for i in SUGAR_GRNS_783)}
    out.update({k: tuple(int(i) for i in v) for k, v in PAPER_ALIASES.items()})
    return out


def find_neuron_list(*folders: Path | str | None) -> Path | None:
    """The first v783 neuron list found in *folders* or their immediate subfolders.

    Looks for ``Completeness_783.csv`` then ``2025_Completeness_783.csv`` in each folder,
    then in its subfolders (sorted by name).

    Returns
    -------
    Path or None
    """
    for folder in folders:
        if folder is None:
            continue
        folder = Path(folder)
        if not folder.is_dir():
            continue
        for name in _NEURON_LIST_NAMES:
            if (folder / name).is_file():
                return folder / name
        for sub in sorted(p for p in folder.iterdir() if p.is_dir()):
            for name in _NEURON_LIST_NAMES:
                if (sub / name).is_file():
                    return sub / name
    return None


def _read_neuron_list(path: Path) -> np.ndarray:
    import pandas as pd

    try:
        frame = pd.read_csv(path, index_col=0)
        ids = np.asarray(frame.index, dtype=np.int64)
    except (ValueError, OSError) as exc:
        raise DataError(f"neuron list {path}: cannot read FlyWire IDs from column 0 ({exc})") from None
    if np.unique(ids).shape[0] != ids.shape[0]:
        raise DataError(f"neuron list {path}: FlyWire IDs in column 0 are not unique")
    return ids


def _synthetic_ids(n: int, named: np.ndarray, seed: int) -> np.ndarray:
    """n sorted unique int64 IDs in FlyWire's range, including all *named* IDs."""
    rng = _rng(seed, "ids")
    need = n - named.shape[0]
    draw = rng.choice(_ID_HIGH - _ID_LOW, size=need + named.shape[0], replace=False) + _ID_LOW
    draw = draw[~np.isin(draw, named)][:need]
    return np.sort(np.concatenate([draw.astype(np.int64), named]))


def _power_law_counts(rng: np.random.Generator, size: int, a: float, kmax: int) -> np.ndarray:
    """Integers 1..kmax with P(k) ~ k**-a (inverse CDF), int64, shape (size,)."""
    k = np.arange(1, kmax + 1, dtype=np.float64)
    cdf = np.cumsum(k ** -a)
    cdf /= cdf[-1]
    u = rng.random(size)
    return np.searchsorted(cdf, u, side="right").astype(np.int64) + 1


def _lognormal_counts(rng: np.random.Generator, size: int, median: float, sigma: float, kmax: int) -> np.ndarray:
    c = np.rint(median * np.exp(sigma * rng.standard_normal(size)))
    return np.clip(c, 1, kmax).astype(np.int64)


def _pick_sources(rng: np.random.Generator, n_targets: int, sources: np.ndarray, fan_in: int) -> tuple[np.ndarray, np.ndarray]:
    """For each of n_targets, fan_in distinct random sources; returns (source, target row)."""
    f = min(fan_in, sources.shape[0])
    if f == 0 or n_targets == 0:
        return np.empty(0, np.int64), np.empty(0, np.int64)
    order = np.argsort(rng.random((n_targets, sources.shape[0])), axis=1)[:, :f]
    return sources[order].ravel(), np.repeat(np.arange(n_targets), f)


# ---------------------------------------------------------------------------- pathways
def _build_pathways(p: SyntheticParams, n: int, named_idx: dict[str, np.ndarray], seed: int
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
    """Embedded sugar and P9 cascades.

    Returns
    -------
    pre, post, count : int64 arrays
        Pathway connections (unique pairs, no self-connections).
    inhibitory_idx : int64 array
        Pathway neurons that are inhibitory.
    pathway_idx : int64 array
        All pathway neurons (fixed sign; not re-assigned by the background).
    info : dict
        Layer sizes and counts.
    """
    rng = _rng(seed, "pathways")
    scale = min(1.0, n / V783_FIGURES["n_neurons"])
    layers_n = [max(2, int(round(s * scale))) for s in p.pathway_layers]
    p9_n = [max(2, int(round(s * scale))) for s in p.p9_layers]
    fixed = np.unique(np.concatenate(list(named_idx.values())))
    free = np.setdiff1d(np.arange(n, dtype=np.int64), fixed)
    total = sum(layers_n) + sum(p9_n)
    if total > free.shape[0]:
        raise ValidationError(f"SyntheticParams.n_neurons: {n} is too small for pathways of {total} neurons")
    chosen = rng.choice(free, size=total, replace=False)
    layers, k = [], 0
    for s in layers_n:
        layers.append(np.sort(chosen[k:k + s])); k += s
    p9_layers = []
    for s in p9_n:
        p9_layers.append(np.sort(chosen[k:k + s])); k += s
    pathway = np.sort(chosen)
    inhib = pathway[rng.random(pathway.shape[0]) < p.pathway_inhibitory]
    # the last (premotor) layer and the P9 cascade excite: they drive MN9
    inhib = np.setdiff1d(inhib, np.concatenate([layers[-1], *p9_layers]))
    km = p.max_synapses
    pre_l, post_l, cnt_l = [], [], []

    def connect(src: np.ndarray, dst: np.ndarray, fan_in: int, median: float) -> None:
        s, row = _pick_sources(rng, dst.shape[0], src, fan_in)
        pre_l.append(s)
        post_l.append(dst[row])
        cnt_l.append(_lognormal_counts(rng, s.shape[0], median, p.pathway_sigma, km))

    connect(named_idx["sugar_grns"], layers[0], p.grn_fan_in, p.grn_synapses)
    for a, b in zip(layers[:-1], layers[1:]):
        connect(a, b, p.pathway_fan_in, p.pathway_synapses)
        connect(named_idx["sugar_grns"], b, p.skip_fan_in, p.skip_synapses)
    for layer in layers:
        connect(layer, layer, p.recurrent_fan_in, p.recurrent_synapses)
    connect(layers[-1], named_idx["MN9"], p.motor_fan_in, p.motor_synapses)
    connect(named_idx["P9"], p9_layers[0], 2, p.p9_synapses)
    for a, b in zip(p9_layers[:-1], p9_layers[1:]):
        connect(a, b, p.pathway_fan_in, p.p9_synapses)
    connect(p9_layers[-1], layers[-1], max(1, p.pathway_fan_in // 3), p.pathway_synapses)
    # recurrent excitatory core and its "olfactory" inputs (own stream: the sugar and P9
    # cascades above do not change when these knobs do)
    rng = _rng(seed, "core")
    core_n = max(2, int(round(p.core_size * scale)))
    olf_n = max(2, int(round(p.olfactory_size * scale)))
    free2 = np.setdiff1d(free, pathway)
    if core_n + olf_n > free2.shape[0]:
        raise ValidationError(f"SyntheticParams.n_neurons: {n} is too small for a core of {core_n + olf_n} neurons")
    chosen2 = rng.choice(free2, size=core_n + olf_n, replace=False)
    core, olf = np.sort(chosen2[:core_n]), np.sort(chosen2[core_n:])
    for src, fan_in, median in ((core, p.core_fan_in, p.core_synapses),
                                (olf, p.olfactory_fan_in, p.olfactory_synapses)):
        src_pos = rng.integers(0, src.shape[0], size=(core_n, fan_in))
        pre_l.append(src[src_pos].ravel())
        post_l.append(np.repeat(core, fan_in))
        cnt_l.append(_lognormal_counts(rng, core_n * fan_in, median, p.pathway_sigma, km))
    n_cascades = int(pathway.shape[0])
    pathway = np.union1d(pathway, np.concatenate([core, olf]))  # all excitatory but inhib
    pre = np.concatenate(pre_l).astype(np.int64)
    post = np.concatenate(post_l).astype(np.int64)
    cnt = np.concatenate(cnt_l)
    keep = pre != post
    pre, post, cnt = pre[keep], post[keep], cnt[keep]
    key = pre * n + post
    _, first = np.unique(key, return_index=True)
    first = np.sort(first)
    info = {
        "sugar_layers": layers_n,
        "p9_layers": p9_n,
        "n_pathway_neurons": n_cascades,
        "n_core_neurons": int(core.shape[0]),
        "n_olfactory_neurons": int(olf.shape[0]),
        "n_pathway_inhibitory": int(inhib.shape[0]),
        "n_pathway_connections": int(first.shape[0]),
        "n_pathway_synapses": int(cnt[first].sum()),
        "sugar_layers_idx": [layer.tolist() for layer in layers],
        "p9_layers_idx": [layer.tolist() for layer in p9_layers],
        "inhibitory_idx": inhib.tolist(),
        "core_idx": core.tolist(),
        "olfactory_idx": olf.tolist(),
    }
    return pre[first], post[first], cnt[first], inhib, np.union1d(pathway, fixed), info


# ---------------------------------------------------------------------------- background
def _sorted_unique(keys: np.ndarray) -> np.ndarray:
    """Sort in place and drop repeats (faster than ``np.unique`` on tens of millions)."""
    keys.sort()
    if keys.size < 2:
        return keys
    keep = np.empty(keys.shape[0], bool)
    keep[0] = True
    np.not_equal(keys[1:], keys[:-1], out=keep[1:])
    return keys[keep]


def _not_in_sorted(keys: np.ndarray, sorted_set: np.ndarray) -> np.ndarray:
    """Mask of *keys* that are not in the sorted array *sorted_set*."""
    if sorted_set.size == 0:
        return np.ones(keys.shape[0], bool)
    pos = np.searchsorted(sorted_set, keys)
    np.minimum(pos, sorted_set.shape[0] - 1, out=pos)
    return sorted_set[pos] != keys


def _background_keys(p: SyntheticParams, n: int, n_target: int, reserved: np.ndarray, seed: int) -> np.ndarray:
    """Sorted unique keys ``pre * n + post`` of background connections, avoiding *reserved*.

    A configuration model: out- and in-degrees are multinomial draws over heavy-tailed
    (log-normal) propensities, stubs are paired by a random permutation; self-connections
    and repeated pairs are removed, the shortfall is topped up by independent draws and the
    surplus trimmed, so that exactly *n_target* keys remain (fewer only if a small network
    is too dense to hold them).
    """
    rng = _rng(seed, "background")
    out_w = np.exp(p.out_degree_sigma * rng.standard_normal(n))
    in_w = np.exp(p.in_degree_sigma * rng.standard_normal(n))
    out_w /= out_w.sum()
    in_w /= in_w.sum()
    reserved = np.sort(reserved)
    arange = np.arange(n, dtype=np.int64)
    m = int(n_target * 1.03) + 16
    pre = np.repeat(arange, rng.multinomial(m, out_w))
    post = np.repeat(arange, rng.multinomial(m, in_w))
    rng.shuffle(post)
    ok = pre != post
    keys = pre[ok] * n + post[ok]
    del pre, post, ok
    keys = _sorted_unique(keys)
    keys = keys[_not_in_sorted(keys, reserved)]
    out_cdf = np.cumsum(out_w)
    in_cdf = np.cumsum(in_w)
    for _ in range(20):
        deficit = n_target - keys.shape[0]
        if deficit <= 0:
            break
        k = int(deficit * 1.2) + 16
        pre = np.minimum(np.searchsorted(out_cdf, rng.random(k) * out_cdf[-1], side="right"), n - 1)
        post = np.minimum(np.searchsorted(in_cdf, rng.random(k) * in_cdf[-1], side="right"), n - 1)
        new = _sorted_unique(pre[pre != post].astype(np.int64) * n + post[pre != post])
        new = new[_not_in_sorted(new, reserved) & _not_in_sorted(new, keys)]
        keys = np.sort(np.concatenate([keys, new]))
    surplus = keys.shape[0] - n_target
    if surplus > 0:
        drop = rng.choice(keys.shape[0], size=surplus, replace=False)
        mask = np.ones(keys.shape[0], bool)
        mask[drop] = False
        keys = keys[mask]
    return keys


def _assign_signs(p: SyntheticParams, n: int, out_degree: np.ndarray, fixed_exc: np.ndarray,
                  fixed_inh: np.ndarray, seed: int) -> np.ndarray:
    """Excitatory flag per neuron (bool, shape (n,)) giving ``inhibitory_share`` of connections."""
    rng = _rng(seed, "signs")
    exc = np.ones(n, bool)
    exc[fixed_inh] = False
    fixed = np.zeros(n, bool)
    fixed[fixed_exc] = True
    fixed[fixed_inh] = True
    total = out_degree.sum()
    goal = p.inhibitory_share * total - out_degree[fixed_inh].sum()
    free = rng.permutation(np.flatnonzero(~fixed))
    cum = np.cumsum(out_degree[free])
    k = int(np.searchsorted(cum, goal, side="right"))
    exc[free[:k]] = False
    return exc


# ---------------------------------------------------------------------------- statistics
def _percentiles(x: np.ndarray) -> dict[str, float]:
    q = [50, 90, 99, 99.9, 100]
    v = np.percentile(x, q) if x.size else np.zeros(len(q))
    return {f"p{g:g}": float(round(val, 3)) for g, val in zip(q, v)} | {"mean": float(round(x.mean(), 3)) if x.size else 0.0}


def synthetic_statistics(connectome: Connectome) -> dict[str, Any]:
    """Summary statistics of a connectome (for ``synthetic.json`` and reports).

    Returns
    -------
    dict
        ``n_neurons``, ``n_connections``, ``n_synapses``, ``synapses_per_connection``,
        ``inhibitory_share_connections``, ``inhibitory_share_synapses``, percentiles of
        out-degree, in-degree and synapse count per connection, and the same v783 figures.
    """
    n = connectome.n_neurons
    w = connectome.weight
    counts = np.abs(w)
    out_deg = np.diff(connectome.indptr)
    in_deg = np.bincount(connectome.post_idx, minlength=n)
    n_conn = connectome.n_connections
    n_syn = int(counts.sum())
    return {
        "n_neurons": n,
        "n_connections": n_conn,
        "n_synapses": n_syn,
        "synapses_per_connection": round(n_syn / max(n_conn, 1), 4),
        "inhibitory_share_connections": round(float((w < 0).mean()) if n_conn else 0.0, 4),
        "inhibitory_share_synapses": round(float(counts[w < 0].sum() / max(n_syn, 1)), 4),
        "share_connections_1_2_synapses": round(float((counts <= 2).mean()) if n_conn else 0.0, 4),
        "out_degree": _percentiles(out_deg),
        "in_degree": _percentiles(in_deg),
        "synapses": _percentiles(counts),
        "n_no_output": int((out_deg == 0).sum()),
        "n_no_input": int((in_deg == 0).sum()),
        "v783": dict(V783_FIGURES),
    }


# ---------------------------------------------------------------------------- public API
def generate_synthetic(
    n_neurons: int | None = None,
    *,
    seed: int = 0,
    neuron_ids: np.ndarray | None = None,
    neuron_list: Path | str | None = None,
    params: SyntheticParams | None = None,
) -> Connectome:
    """Generate a synthetic connectome in memory.

    Parameters
    ----------
    n_neurons : int, optional
        Number of neurons (default 138,639, or the length of the neuron list). Must be at
        least 100. A smaller network keeps the named neurons and a scaled-down pathway;
        its activity is not calibrated.
    seed : int
        Seed (>= 0); the same seed and arguments give identical arrays.
    neuron_ids : int64 array, shape (n_neurons,), optional
        FlyWire IDs to use in this order (must contain the named neurons).
    neuron_list : path, optional
        A neuron list CSV (``Completeness_783.csv``) whose IDs are used in row order.
    params : SyntheticParams, optional
        Generator knobs (default: full-size, calibrated).

    Returns
    -------
    Connectome
        ``synthetic=True``, ``name="synthetic-v1-seed{seed}"``, ``meta`` with the
        parameters, the ID source and :func:`synthetic_statistics`.

    Raises
    ------
    ValidationError
        For an impossible size or seed, or IDs that lack the named neurons.
    DataError
        For an unreadable neuron list.

    Examples
    --------
    >>> net = generate_synthetic(500, seed=1)
    >>> net.n_neurons, net.synthetic
    (500, True)
    """
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValidationError(f"generate_synthetic.seed: must be an integer >= 0 (got {seed!r})")
    seed = int(seed)
    p = params or SyntheticParams()
    named = named_neuron_ids()
    named_all = np.unique(np.array([i for v in named.values() for i in v], dtype=np.int64))
    id_source = "synthetic"
    if neuron_list is not None:
        neuron_ids = _read_neuron_list(Path(neuron_list))
        id_source = f"neuron list {Path(neuron_list).name}"
    if neuron_ids is not None:
        ids = np.asarray(neuron_ids, dtype=np.int64)
        if ids.ndim != 1 or np.unique(ids).shape[0] != ids.shape[0]:
            raise ValidationError("generate_synthetic.neuron_ids: must be a 1-D array of unique FlyWire IDs")
        missing = np.setdiff1d(named_all, ids)
        if missing.size:
            raise ValidationError(
                f"generate_synthetic.neuron_ids: lacks {missing.size} of the paper's named neurons "
                f"(e.g. {missing[:3].tolist()}); give the v783 list or leave neuron_ids out"
            )
        if n_neurons is not None and n_neurons != ids.shape[0]:
            raise ValidationError(
                f"generate_synthetic.n_neurons: {n_neurons} differs from the {ids.shape[0]} IDs given"
            )
        if id_source == "synthetic":
            id_source = "neuron_ids argument"
        p = replace(p, n_neurons=int(ids.shape[0]))
    else:
        if n_neurons is not None:
            if isinstance(n_neurons, bool) or not isinstance(n_neurons, (int, np.integer)):
                raise ValidationError(f"generate_synthetic.n_neurons: must be an integer (got {n_neurons!r})")
            p = replace(p, n_neurons=int(n_neurons))
        ids = _synthetic_ids(p.n_neurons, named_all, seed)
    n = p.n_neurons
    t0 = time.perf_counter()

    sorter = np.argsort(ids, kind="stable")

    def idx_of(fids: tuple[int, ...]) -> np.ndarray:
        a = np.asarray(fids, dtype=np.int64)
        return sorter[np.searchsorted(ids, a, sorter=sorter)].astype(np.int64)

    named_idx = {k: idx_of(v) for k, v in named.items()}
    pw_pre, pw_post, pw_cnt, pw_inh, fixed_sign, pw_info = _build_pathways(p, n, named_idx, seed)
    pw_key = pw_pre * n + pw_post

    mean_deg = min(p.mean_out_degree, p.max_density * (n - 1))
    n_total = int(round(mean_deg * n))
    bg_key = _background_keys(p, n, max(0, n_total - pw_key.shape[0]), pw_key, seed)
    rng = _rng(seed, "synapses")
    bg_cnt = _power_law_counts(rng, bg_key.shape[0], p.synapse_exponent, p.max_synapses)

    # merge the (few, sorted, disjoint) pathway keys into the sorted background keys
    pw_order = np.argsort(pw_key)
    pw_key, pw_cnt = pw_key[pw_order], pw_cnt[pw_order]
    at = np.searchsorted(bg_key, pw_key)
    keys = np.insert(bg_key, at, pw_key)
    cnt = np.insert(bg_cnt, at, pw_cnt)
    del bg_key, bg_cnt
    pre = keys // n
    post = (keys - pre * n).astype(np.int32)
    del keys
    out_deg = np.bincount(pre, minlength=n)
    exc = _assign_signs(p, n, out_deg, np.setdiff1d(fixed_sign, pw_inh), pw_inh, seed)
    weight = np.where(exc[pre], cnt, -cnt).astype(np.float64)
    del pre, cnt
    indptr = np.zeros(n + 1, np.int64)
    np.cumsum(out_deg, out=indptr[1:])
    name = f"synthetic-{GENERATOR_VERSION}-seed{seed}"
    net = Connectome(ids, indptr, post, weight, name=name, synthetic=True)
    net.validate_arrays()
    stats = synthetic_statistics(net)
    net.meta = {
        "synthetic": True,
        "generator": f"brainfly.connectome.synthetic {GENERATOR_VERSION}",
        "seed": seed,
        "id_source": id_source,
        "params": p.to_dict(),
        "pathways": pw_info,
        "statistics": stats,
        "calibration": dict(CALIBRATION),
    }
    log.info("generated %s: %d neurons, %d connections in %.1f s", name, n, net.n_connections,
             time.perf_counter() - t0)
    return net


def write_synthetic(connectome: Connectome, folder: Path | str) -> Path:
    """Write *connectome* in the canonical files into *folder* (created).

    Writes :data:`SYNTHETIC_FILES`: the neuron list CSV, the connectivity parquet (rows
    sorted by presynaptic then postsynaptic index), the empty ``SYNTHETIC`` marker and
    ``synthetic.json`` (``connectome.meta`` plus file sizes and SHA-256). The same
    connectome gives byte-identical files.

    Returns
    -------
    Path
        The folder.
    """
    import pandas as pd
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    ids = connectome.flywire_ids
    neurons = pd.DataFrame({"Completed": np.ones(ids.shape[0], bool)}, index=pd.Index(ids, name=None))
    neurons.to_csv(folder / SYNTHETIC_FILES["neurons"])

    names = ["Presynaptic_ID", "Postsynaptic_ID", "Presynaptic_Index", "Postsynaptic_Index",
             "Connectivity", "Excitatory", "Excitatory x Connectivity"]
    schema = pa.schema([(c, pa.int64()) for c in names])
    n_rows = connectome.n_connections
    pre_all = connectome.pre_idx
    chunk = 2_000_000
    with pq.ParquetWriter(folder / SYNTHETIC_FILES["connectivity"], schema, compression="snappy") as writer:
        for start in range(0, max(n_rows, 1), chunk):
            stop = min(start + chunk, n_rows)
            pre = pre_all[start:stop].astype(np.int64)
            post = connectome.post_idx[start:stop].astype(np.int64)
            signed = connectome.weight[start:stop].astype(np.int64)
            cols = [ids[pre], ids[post], pre, post, np.abs(signed), (signed > 0).astype(np.int64), signed]
            writer.write_table(pa.Table.from_arrays([pa.array(c) for c in cols], schema=schema))
    del pre_all
    (folder / SYNTHETIC_FILES["marker"]).write_bytes(b"")
    meta = dict(connectome.meta)
    meta["name"] = connectome.name
    meta["files"] = {}
    for key in ("neurons", "connectivity"):
        path = folder / SYNTHETIC_FILES[key]
        h = hashlib.sha256()
        with open(path, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 22), b""):
                h.update(block)
        meta["files"][path.name] = {"bytes": path.stat().st_size, "sha256": h.hexdigest()}
    (folder / SYNTHETIC_FILES["meta"]).write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
    return folder


def _is_current(folder: Path) -> bool:
    """True if *folder* is a finished generation by this generator version with today's knobs.

    A folder left by an older calibration (same name, other parameters) is regenerated
    rather than silently reused.
    """
    marker, meta = folder / SYNTHETIC_FILES["marker"], folder / SYNTHETIC_FILES["meta"]
    if not (marker.is_file() and meta.is_file()):
        return False
    try:
        info = json.loads(meta.read_text())
    except (OSError, ValueError):
        return False
    knobs = {k: v for k, v in (info.get("params") or {}).items() if k != "n_neurons"}
    current = {k: v for k, v in json.loads(json.dumps(SyntheticParams().to_dict())).items() if k != "n_neurons"}
    return info.get("generator") == f"brainfly.connectome.synthetic {GENERATOR_VERSION}" and knobs == current


def ensure_synthetic(
    cache_dir: Path | str,
    *,
    seed: int = 0,
    progress: bool = True,
    neuron_list: Path | str | None = None,
) -> Path:
    """The folder of the full-size synthetic connectome, generated on first use.

    Parameters
    ----------
    cache_dir : path
        Cache folder; the connectome lives in ``cache_dir / f"synthetic-v1-seed{seed}"``.
    seed : int
        Generator seed.
    progress : bool
        Print a line to stderr when generating (takes about half a minute).
    neuron_list : path, optional
        v783 neuron list whose IDs to reuse; by default one is looked for in *cache_dir*
        and its subfolders (:func:`find_neuron_list`), else synthetic IDs are drawn.

    Returns
    -------
    Path
        The folder holding :data:`SYNTHETIC_FILES`.

    Notes
    -----
    The files are written into a temporary sibling folder that is renamed into place
    when complete, so an interrupted generation is never taken for a finished one.
    """
    cache_dir = Path(cache_dir)
    target = cache_dir / f"synthetic-{GENERATOR_VERSION}-seed{int(seed)}"
    if _is_current(target):
        return target
    cache_dir.mkdir(parents=True, exist_ok=True)
    if neuron_list is None:
        neuron_list = find_neuron_list(cache_dir)
    t0 = time.perf_counter()
    if progress:
        src = f"IDs of {neuron_list}" if neuron_list else "synthetic IDs"
        print(f"brainfly: generating the SYNTHETIC connectome {target.name} ({src}) into {cache_dir} ...",
              file=sys.stderr, flush=True)
    net = generate_synthetic(seed=int(seed), neuron_list=neuron_list)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".part", dir=cache_dir))
    try:
        write_synthetic(net, tmp)
        if target.exists() and not _is_current(target):
            shutil.rmtree(target)  # unfinished, or left by an older calibration
        try:
            os.replace(tmp, target)
        except OSError:
            # another process finished first (target exists and is non-empty): keep theirs
            if not _is_current(target):
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    if progress:
        print(f"brainfly: synthetic connectome ready ({net.n_connections:,} connections, "
              f"{time.perf_counter() - t0:.0f} s)", file=sys.stderr, flush=True)
    return target
