"""Download the published connectome files: pinned digests, progress bar, resumable, cached.

Files come from the paper's repository (``github.com/philshiu/Drosophila_brain_model``,
branch ``main``; CC-BY 4.0 data of the FlyWire Consortium). The base URL can be replaced
with the environment variable ``BRAINFLY_DATA_URL`` (a mirror, or a local test server).

A file is fetched with :func:`pooch.retrieve` and a downloader of our own that keeps the
bytes received so far in ``<name>.part`` next to the target and asks the server only for the
rest (HTTP ``Range``) when a download is retried after an interruption. Pooch checks the
SHA-256 before moving the file into place, so a partial or wrong file is never taken as
complete: a wrong digest raises :class:`~brainfly.errors.ChecksumError` and leaves nothing
in the cache.
"""

from __future__ import annotations

from dataclasses import dataclass
import logging
import os
from pathlib import Path
import shutil
import sys
from typing import Any
import urllib.error

from ..errors import ChecksumError, DownloadError, ValidationError, suggest
from .cache import downloads_dir, file_sha256
from .files import PINNED_FILES, PinnedFile

__all__ = [
    "DEFAULT_BASE_URL",
    "URL_ENV",
    "REMOTE_DATASETS",
    "base_url",
    "download_file",
    "download_dataset",
    "is_downloadable",
    "manual_download_hint",
]

log = logging.getLogger(__name__)

#: Raw-file URL prefix of the paper's repository (branch main; follows LFS redirects).
DEFAULT_BASE_URL = "https://github.com/philshiu/Drosophila_brain_model/raw/main/"
#: Environment variable that replaces :data:`DEFAULT_BASE_URL`.
URL_ENV = "BRAINFLY_DATA_URL"

#: Downloadable datasets: name -> the published files (neuron list first).
REMOTE_DATASETS: dict[str, tuple[str, str]] = {
    "flywire-783": ("Completeness_783.csv", "Connectivity_783.parquet"),
    "flywire-630": ("2023_03_23_completeness_630_final.csv", "2023_03_23_connectivity_630_final.parquet"),
}

_CHUNK = 1 << 20


def base_url() -> str:
    """URL prefix files are downloaded from (``$BRAINFLY_DATA_URL`` or :data:`DEFAULT_BASE_URL`)."""
    url = os.environ.get(URL_ENV) or DEFAULT_BASE_URL
    return url if url.endswith("/") else url + "/"


def manual_download_hint(names: list[str] | tuple[str, ...], dest: Path | None = None) -> str:
    """Text telling the user which files to fetch by hand, from where, and where to put them."""
    dest = dest if dest is not None else downloads_dir()
    lines = [f"  {base_url()}{n}" + (f"  ({PINNED_FILES[n].size:,} bytes, SHA-256 {PINNED_FILES[n].sha256})"
                                     if n in PINNED_FILES else "") for n in names]
    return ("Get these files by hand:\n" + "\n".join(lines) + f"\nand put them in {dest}, or in any folder "
            "given with --data FOLDER (or the environment variable BRAINFLY_DATA); "
            "or run on the generated connectome with --data synthetic.")


class _Progress:
    """A progress bar on stderr (rich), or nothing."""

    def __init__(self, enabled: bool, name: str, total: int | None, done: int) -> None:
        self._bar: Any = None
        if not enabled:
            return
        try:
            from rich.progress import (BarColumn, DownloadColumn, Progress, TextColumn,
                                       TimeRemainingColumn, TransferSpeedColumn)
            from rich.console import Console
        except ImportError:  # pragma: no cover - rich is a dependency
            return
        self._bar = Progress(TextColumn("[bold]{task.description}"), BarColumn(), DownloadColumn(),
                             TransferSpeedColumn(), TimeRemainingColumn(),
                             console=Console(file=sys.stderr), transient=False)
        self._task = self._bar.add_task(f"downloading {name}", total=total, completed=done)
        self._bar.start()

    def advance(self, n: int) -> None:
        if self._bar is not None:
            self._bar.advance(self._task, n)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()


@dataclass
class _ResumingDownloader:
    """Pooch downloader that resumes from ``partial`` with an HTTP Range request."""

    partial: Path
    size: int | None
    progress: bool
    timeout_s: float = 60.0

    def __call__(self, url: str, output_file: Any, pooch: Any = None, check_only: bool = False) -> Any:
        if check_only:
            return is_url_reachable(url, self.timeout_s)
        start = self.partial.stat().st_size if self.partial.exists() else 0
        if self.size is not None and start > self.size:
            self.partial.unlink()
            start = 0
        if self.size is None or start < self.size:
            self._fetch(url, start)
        shutil.move(str(self.partial), str(output_file))
        return None

    def _fetch(self, url: str, start: int) -> None:
        headers = {"User-Agent": "brainfly (https://github.com/philshiu/Drosophila_brain_model data)"}
        if start:
            headers["Range"] = f"bytes={start}-"
        import urllib.request  # (with http.client and email: ~30 ms that a run without a download does not pay)

        req = urllib.request.Request(url, headers=headers)
        try:
            resp_cm = urllib.request.urlopen(req, timeout=self.timeout_s)
        except urllib.error.HTTPError as exc:
            if exc.code == 416:  # the kept part is not a prefix of the server's file: start over
                self.partial.unlink(missing_ok=True)
                raise DownloadError(f"download of {url}: the server's file is shorter than the part kept from "
                                    "an earlier try; the part was removed, run the command again") from None
            raise
        with resp_cm as resp:
            status = getattr(resp, "status", 200)
            if start and status != 206:  # server ignored the Range header: start again
                log.info("server does not resume downloads; fetching %s from the start", url)
                start = 0
            length = resp.headers.get("Content-Length")
            expected = start + int(length) if length is not None and length.isdigit() else self.size
            bar = _Progress(self.progress, self.partial.name.removesuffix(".part"), expected, start)
            received = start
            try:
                with open(self.partial, "ab" if start else "wb") as f:
                    while True:
                        block = resp.read(_CHUNK)
                        if not block:
                            break
                        f.write(block)
                        received += len(block)
                        bar.advance(len(block))
            finally:
                bar.close()
        if expected is not None and received < expected:
            raise DownloadError(f"download of {url} stopped after {received:,} of {expected:,} bytes; "
                                f"run the command again to resume (the part is kept in {self.partial})")


def is_url_reachable(url: str, timeout_s: float = 3.0) -> bool:
    """True if a HEAD request to *url* succeeds within *timeout_s* seconds."""
    import urllib.request  # (see _ResumingDownloader._fetch)

    req = urllib.request.Request(url, method="HEAD", headers={"User-Agent": "brainfly"})
    try:
        with urllib.request.urlopen(req, timeout=timeout_s) as resp:
            return 200 <= getattr(resp, "status", 200) < 400
    except (OSError, ValueError):
        return False


_REACHABLE: dict[str, bool] = {}


def is_downloadable(dataset: str = "flywire-783", timeout_s: float = 3.0) -> bool:
    """Whether the dataset's files can be downloaded from here (probed once per process and URL).

    Parameters
    ----------
    dataset : str
        A name of :data:`REMOTE_DATASETS`.
    timeout_s : float
        Seconds to wait for the server.
    """
    names = REMOTE_DATASETS.get(dataset)
    if names is None:
        return False
    url = base_url() + names[0]
    if url not in _REACHABLE:
        _REACHABLE[url] = is_url_reachable(url, timeout_s)
    return _REACHABLE[url]


def download_file(
    name: str,
    dest: str | Path | None = None,
    *,
    progress: bool = True,
    pinned: PinnedFile | None = None,
    url: str | None = None,
    timeout_s: float = 60.0,
) -> Path:
    """Download one published file into *dest* unless it is already there.

    Parameters
    ----------
    name : str
        File name (a key of :data:`~brainfly.connectome.files.PINNED_FILES`).
    dest : str or Path, optional
        Target folder (default: ``cache_dir()/data``).
    progress : bool
        Show a progress bar on stderr.
    pinned : PinnedFile, optional
        Expected size and digest (default: ``PINNED_FILES[name]``).
    url : str, optional
        Source URL (default: ``base_url() + name``).
    timeout_s : float
        Network timeout per read, seconds.

    Returns
    -------
    Path
        The verified file.

    Raises
    ------
    ChecksumError
        The downloaded bytes differ from the pinned digest (nothing is kept).
    DownloadError
        No network, HTTP error, or interrupted transfer (the part is kept for resuming);
        the message says which file to get by hand, from where, and where to put it.
    """
    dest = Path(dest) if dest is not None else downloads_dir()
    try:
        return _download_file(name, dest, progress=progress, pinned=pinned, url=url, timeout_s=timeout_s)
    except DownloadError as exc:
        raise DownloadError(f"{exc}\n" + manual_download_hint([name], dest)) from None


def _download_file(name: str, dest: Path, *, progress: bool, pinned: PinnedFile | None, url: str | None,
                   timeout_s: float) -> Path:
    import pooch

    pin = pinned if pinned is not None else PINNED_FILES.get(name)
    if pin is None:
        raise ValidationError(f"download_file: no pinned digest for {name!r}; known files: "
                              f"{sorted(PINNED_FILES)}")
    target = dest / name
    if target.is_file():
        sha, size = file_sha256(target)
        if sha == pin.sha256 and size == pin.size:
            return target
        log.warning("%s does not match its pinned digest; downloading it again", target)
    url = url or base_url() + name
    try:
        dest.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DownloadError(f"cannot create the download folder {dest} ({exc})") from None
    downloader = _ResumingDownloader(dest / f"{name}.part", pin.size, progress, timeout_s)
    pooch.get_logger().setLevel(logging.WARNING)
    log.info("downloading %s to %s", url, target)
    try:
        path = pooch.retrieve(url, known_hash=f"sha256:{pin.sha256}", fname=name, path=dest,
                              downloader=downloader, progressbar=False)
    except DownloadError:
        raise
    except urllib.error.HTTPError as exc:
        raise DownloadError(f"download of {url} failed: HTTP {exc.code} {exc.reason}") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise DownloadError(f"download of {url} failed ({reason}); no network?") from None
    except ValueError as exc:  # pooch: hash mismatch (its temporary file is already removed)
        (dest / f"{name}.part").unlink(missing_ok=True)
        raise ChecksumError(f"downloaded file {name} from {url}: content differs from the pinned SHA-256 "
                            f"{pin.sha256} ({pin.size:,} bytes) and was discarded ({exc}). The server sent a "
                            "different or truncated file; try again later, or check "
                            f"${URL_ENV} ({base_url()}).") from None
    return Path(path)


def download_dataset(name: str = "flywire-783", dest: str | Path | None = None, *, progress: bool = True) -> Path:
    """Download (or find already downloaded) both files of a published dataset.

    Parameters
    ----------
    name : str
        ``flywire-783`` or ``flywire-630``.
    dest : str or Path, optional
        Target folder (default: ``cache_dir()/data``).
    progress : bool
        Show progress bars on stderr.

    Returns
    -------
    Path
        The folder holding the verified files.

    Raises
    ------
    ValidationError
        Unknown dataset name.
    ChecksumError, DownloadError
        See :func:`download_file`.
    """
    files = REMOTE_DATASETS.get(name)
    if files is None:
        raise ValidationError(f"download_dataset: unknown dataset {name!r}; downloadable datasets: "
                              f"{', '.join(REMOTE_DATASETS)}.{suggest(name, REMOTE_DATASETS)}")
    dest = Path(dest) if dest is not None else downloads_dir()
    for f in files:
        try:
            _download_file(f, dest, progress=progress, pinned=None, url=None, timeout_s=60.0)
        except DownloadError as exc:
            raise DownloadError(f"{exc}\n" + manual_download_hint(files, dest)) from None
    return dest
