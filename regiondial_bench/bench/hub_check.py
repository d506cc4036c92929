"""Fail fast when a Hub model or bench cannot be had: one line with the fix, in seconds.

Without this, an offline machine or a mistyped id costs a minute of library retries and ends in
a multi-line traceback. :func:`check_hub_ids` runs before any heavy import: for each id that is
not a local folder it connects to the Hub endpoint (``$HF_ENDPOINT``) with a short timeout and,
when the Hub answers, asks whether the repository exists. A copy already in the local Hugging Face
cache is fine offline.
"""

from __future__ import annotations

import os
import re
import socket
from collections.abc import Iterable
from pathlib import Path
from typing import Literal
from urllib.parse import urlparse

RepoType = Literal["model", "dataset"]
_REPO_ID = re.compile(r"[A-Za-z0-9][\w.-]{0,95}/[\w.-]{1,96}")
CONNECT_TIMEOUT_S = 3.0


class HubUnavailableError(RuntimeError):
    """A Hub model or dataset is needed but cannot be reached or does not exist."""


def _endpoint() -> str:
    return os.environ.get("HF_ENDPOINT", "https://huggingface.co").rstrip("/")


def _offline() -> bool:
    return any(os.environ.get(k, "").strip().lower() in ("1", "true", "yes", "on")
               for k in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))


def _cached(repo_id: str, repo_type: RepoType) -> bool:
    hub_cache = os.environ.get("HF_HUB_CACHE") or os.path.join(
        os.environ.get("HF_HOME") or os.path.join(os.path.expanduser("~"), ".cache", "huggingface"), "hub")
    folder = Path(hub_cache) / f"{repo_type}s--{repo_id.replace('/', '--')}"
    return (folder / "snapshots").is_dir() and any((folder / "snapshots").iterdir())


def _reachable(endpoint: str) -> str | None:
    """None when a TCP connection to the endpoint opens, else why not."""
    url = urlparse(endpoint)
    host = url.hostname
    if not host:
        return f"HF_ENDPOINT={endpoint!r} is not a URL"
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        with socket.create_connection((host, port), timeout=CONNECT_TIMEOUT_S):
            return None
    except OSError as exc:
        return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def is_hub_id(ref: str) -> bool:
    """Whether ``ref`` reads as ``org/name`` and is not an existing local path."""
    return bool(_REPO_ID.fullmatch(ref)) and not Path(ref).exists()


def check_hub_id(repo_id: str, repo_type: RepoType = "model", what: str = "model") -> None:
    """Raise :class:`HubUnavailableError` (one line, with the fix) when ``repo_id`` cannot be had."""
    if not is_hub_id(repo_id):
        return
    cached = _cached(repo_id, repo_type)
    if _offline():
        if not cached:
            raise HubUnavailableError(
                f"{what} {repo_id!r} is not in the local Hugging Face cache and HF_HUB_OFFLINE is set: "
                "download it once online, or pass a local folder")
        return
    endpoint = _endpoint()
    problem = _reachable(endpoint)
    if problem is not None:
        if cached:
            return  # the loader finds the cached copy (set HF_HUB_OFFLINE=1 to skip its retries)
        raise HubUnavailableError(
            f"cannot reach the Hugging Face Hub at {endpoint} ({problem}) to fetch {what} {repo_id!r}: "
            "check the network or HF_ENDPOINT, or pass a local folder (HF_HUB_OFFLINE=1 uses cached copies)")
    try:
        from huggingface_hub import HfApi
        from huggingface_hub.errors import GatedRepoError, RepositoryNotFoundError
    except ImportError:
        return
    try:
        HfApi(endpoint=endpoint).repo_info(repo_id, repo_type=repo_type, timeout=CONNECT_TIMEOUT_S * 2)
    except GatedRepoError:
        return  # exists; the loader reports the access problem
    except RepositoryNotFoundError as exc:
        raise HubUnavailableError(
            f"no {repo_type} {repo_id!r} on {endpoint} (or it is private: log in with `hf auth login`); "
            "check the id, or pass a local folder") from exc
    except Exception:  # noqa: BLE001 - a slow or odd answer: leave the verdict to the loader
        return


def check_hub_ids(ids: Iterable[tuple[str, RepoType, str]]) -> None:
    """:func:`check_hub_id` for each ``(id, repo type, what)``."""
    for repo_id, repo_type, what in ids:
        check_hub_id(repo_id, repo_type, what)
