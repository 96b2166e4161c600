"""Result images as files that are written once and never rewritten (issue 14's concurrency bug).

Handing Gradio a PIL image or an array makes it encode the picture and write `<content hash>/image.png`
in place on every request; identical answers share that path, so a file being served to one client was
truncated and rewritten for another ("peer closed connection without sending complete message body",
41-63 of 100 identical concurrent requests). Here every picture is stored under the hash of its bytes,
written to a temporary name and renamed into place (atomic on POSIX), and an existing file is only touched
(so Gradio's hourly `delete_cache` keeps it). The folder lives inside Gradio's cache, so Gradio serves
the file directly instead of copying it.
"""

from __future__ import annotations

import hashlib
import io
import os
import tempfile
from pathlib import Path

from gradio.utils import get_upload_folder
from PIL import Image

FOLDER_NAME = "rtx-demo-results"


def default_folder() -> Path:
    """<Gradio's cache (GRADIO_TEMP_DIR or the system temp dir /gradio)>/rtx-demo-results."""
    return Path(get_upload_folder()) / FOLDER_NAME


class ResultFiles:
    """Content-addressed PNG files under one folder; safe to call from any number of threads or processes."""

    def __init__(self, folder: Path | None = None) -> None:
        self.folder = Path(folder) if folder is not None else default_folder()

    def png(self, data: bytes) -> str:
        """The path of a file holding exactly `data` (written now if no such file exists yet)."""
        path = self.folder / f"{hashlib.sha256(data).hexdigest()[:40]}.png"
        if path.exists():
            try:
                os.utime(path)  # handed out again: restart its age for delete_cache
            except OSError:
                pass
            else:
                return str(path)
        self.folder.mkdir(parents=True, exist_ok=True)  # again after delete_cache emptied it
        fd, staging = tempfile.mkstemp(dir=self.folder, prefix=".", suffix=".part")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
            os.replace(staging, path)  # readers see no file or the whole file, never a partial one
        except BaseException:
            Path(staging).unlink(missing_ok=True)
            raise
        return str(path)

    def image(self, image: Image.Image) -> str:
        """A PIL image as a content-addressed PNG file."""
        buffer = io.BytesIO()
        image.save(buffer, format="PNG")
        return self.png(buffer.getvalue())


__all__ = ["ResultFiles", "default_folder"]
