"""Checkpoints named by a Hugging Face hub address: `hf://OWNER/REPO/FILE` (e.g. the later MadryLab zoo,
`hf://madrylab/robust-imagenet-models/resnet50_l2_eps3.ckpt`), or plain local paths.

Hub files go through `huggingface_hub.hf_hub_download` into its own cache (HF_HUB_CACHE, else HF_HOME/hub,
else ~/.cache/huggingface/hub), so a file is downloaded once and shared with every other tool that uses the
hub. With HF_HUB_OFFLINE=1 only that cache is read; a missing file is one line naming the file and how to get
it. The environment is read at call time (the library reads it at import), so a test or a caller that sets it
later is obeyed.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from compute.errors import RtxError

SCHEME = "hf://"


@dataclass(frozen=True)
class HubFile:
    """One file of a hub model repository."""

    repo_id: str  # OWNER/REPO
    filename: str  # path inside the repository, may contain '/'

    @property
    def uri(self) -> str:
        return f"{SCHEME}{self.repo_id}/{self.filename}"

    @property
    def fetch_command(self) -> str:
        """The shell command that puts this file into the local hub cache (`hf` is huggingface_hub's CLI)."""
        return f"hf download {self.repo_id} {self.filename}"


def is_hub_uri(text: str | os.PathLike) -> bool:
    return str(text).startswith(SCHEME)


def parse_hub_uri(uri: str) -> HubFile:
    """'hf://OWNER/REPO/FILE' -> HubFile; anything shorter is a one-line error showing the form."""
    parts = uri[len(SCHEME):].split("/", 2) if is_hub_uri(uri) else []
    if len(parts) < 3 or not all(parts):
        raise RtxError(f"cannot parse hub address {uri!r}; write hf://OWNER/REPO/FILE, "
                       "e.g. hf://madrylab/robust-imagenet-models/resnet50_l2_eps3.ckpt")
    return HubFile(f"{parts[0]}/{parts[1]}", parts[2])


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def hub_cache_dir() -> Path | None:
    """HF_HUB_CACHE, else HF_HOME/hub, as set now; None leaves the library's default (~/.cache/huggingface/hub)."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]).expanduser() / "hub"
    return None


def download_hub_file(hub: HubFile) -> Path:
    """The file's path in the local hub cache, downloading it first when online and missing."""
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import (
        EntryNotFoundError,
        GatedRepoError,
        HfHubHTTPError,
        LocalEntryNotFoundError,
        OfflineModeIsEnabled,
        RepositoryNotFoundError,
    )

    offline = _offline()
    try:
        return Path(hf_hub_download(hub.repo_id, hub.filename, cache_dir=hub_cache_dir(), local_files_only=offline))
    except (LocalEntryNotFoundError, OfflineModeIsEnabled) as err:
        where = hub_cache_dir() or "the default hub cache"
        if offline:
            raise RtxError(f"{hub.uri} is not in the local hub cache ({where}) and HF_HUB_OFFLINE=1; run "
                           f"`{hub.fetch_command}` where there is a network, or unset HF_HUB_OFFLINE") from err
        raise RtxError(f"cannot reach the hub for {hub.uri} and it is not cached in {where}; check the network, "
                       f"or run `{hub.fetch_command}` elsewhere and copy the cache") from err
    except GatedRepoError as err:
        raise RtxError(f"{hub.uri}: the repository is gated; accept its terms on the hub and log in "
                       "(`hf auth login`)") from err
    except RepositoryNotFoundError as err:
        raise RtxError(f"{hub.uri}: no repository {hub.repo_id!r} on the hub (or it is private); "
                       "check OWNER/REPO") from err
    except EntryNotFoundError as err:
        raise RtxError(f"{hub.uri}: repository {hub.repo_id} has no file {hub.filename!r}; "
                       "check the file name on the repository's Files page") from err
    except (HfHubHTTPError, OSError) as err:
        first = str(err).splitlines()[0][:120] if str(err) else type(err).__name__
        raise RtxError(f"{hub.uri}: download failed ({first}); retry, or run `{hub.fetch_command}`") from err


def resolve_checkpoint(uri_or_path: str | os.PathLike, folder: str | os.PathLike | None = None) -> Path:
    """A checkpoint argument -> a local file path.

    `hf://OWNER/REPO/FILE` comes from the hub cache (downloaded when online); any other text is a local path,
    taken relative to `folder` when given and the path is relative. Existence of local paths is checked by the
    loaders, which know what to suggest.
    """
    if is_hub_uri(uri_or_path):
        return download_hub_file(parse_hub_uri(str(uri_or_path)))
    path = Path(uri_or_path).expanduser()
    return path if folder is None or path.is_absolute() else Path(folder).expanduser() / path
