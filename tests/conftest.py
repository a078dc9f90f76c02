"""Shared test fixtures: isolation from the user's cache and network, tiny connectome files."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

import numpy as np
import pytest


@pytest.fixture(autouse=True, scope="session")
def _isolated_brainfly_env(tmp_path_factory: pytest.TempPathFactory):
    """Tests never touch the user's cache, data folder or the network (closed loopback port).

    A cache folder set explicitly in ``BRAINFLY_CACHE_DIR`` is kept (e.g. to reuse a generated
    full-size synthetic connectome across runs); otherwise each session gets a fresh one.
    """
    saved = {k: os.environ.get(k) for k in ("BRAINFLY_CACHE_DIR", "BRAINFLY_DATA", "BRAINFLY_DATA_URL")}
    if not saved["BRAINFLY_CACHE_DIR"]:
        os.environ["BRAINFLY_CACHE_DIR"] = str(tmp_path_factory.mktemp("brainfly-cache"))
    os.environ.pop("BRAINFLY_DATA", None)
    os.environ["BRAINFLY_DATA_URL"] = "http://127.0.0.1:9/"  # discard port: refused at once
    yield
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


def write_connectome_files(
    folder: Path,
    ids: list[int] | np.ndarray = (11, 22, 33, 44, 55),
    edges: list[tuple[int, int, int, bool]] = ((0, 1, 3, True), (2, 0, 2, False), (0, 4, 1, False), (3, 2, 5, True)),
    *,
    comp_name: str = "Completeness_tiny.csv",
    conn_name: str = "Connectivity_tiny.parquet",
    crlf: bool = False,
) -> tuple[Path, Path]:
    """Write a neuron list and a connection list in the canonical format.

    *edges* are ``(pre_idx, post_idx, synapse_count, excitatory)``.
    """
    import pandas as pd

    folder.mkdir(parents=True, exist_ok=True)
    ids = np.asarray(ids, dtype=np.int64)
    text = ",Completed\n" + "".join(f"{i},True\n" for i in ids.tolist())
    comp = folder / comp_name
    comp.write_bytes(text.replace("\n", "\r\n").encode() if crlf else text.encode())
    e = np.asarray(edges, dtype=np.int64).reshape(-1, 4)
    sign = np.where(e[:, 3] > 0, 1, -1)
    df = pd.DataFrame({
        "Presynaptic_ID": ids[e[:, 0]], "Postsynaptic_ID": ids[e[:, 1]],
        "Presynaptic_Index": e[:, 0], "Postsynaptic_Index": e[:, 1],
        "Connectivity": e[:, 2], "Excitatory": e[:, 3], "Excitatory x Connectivity": e[:, 2] * sign,
    })
    conn = folder / conn_name
    df.to_parquet(conn, index=False)
    return comp, conn


@pytest.fixture
def connectome_files() -> Callable[..., tuple[Path, Path]]:
    """Factory writing tiny canonical connectome files (see :func:`write_connectome_files`)."""
    return write_connectome_files


from brainfly.engines import base as _base  # noqa: E402


class KickEcho(_base.Engine):
    """Test engine: every kick 'spikes' in the next step (no dynamics), with a run record."""

    name = "_kick_echo"
    description = "test engine: kicks echoed as spikes"
    capabilities = frozenset({"poisson", "schedule"})
    calls: list = []

    def simulate(self, sim, trials, progress=None):
        type(self).calls.append(list(trials))
        k = sim.kicks(trials)
        for n, _ in enumerate(trials, 1):
            if progress is not None:
                progress(n, len(trials))
        return _base.EngineOutput(k.trial, k.idx, k.step + 1,
                                  _base.RunRecord(setup_s=0.001, sim_s=0.002, details={"echoed": int(k.n_kicks)}))


@pytest.fixture
def echo_engine():
    """The :class:`KickEcho` engine, registered for the test."""
    _base.register_engine(KickEcho)
    KickEcho.calls = []
    yield KickEcho()
    _base._REGISTRY.pop(KickEcho.name, None)
