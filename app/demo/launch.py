"""Serving the demo: offline, loopback by default, one torch thread per request."""

from __future__ import annotations

from pathlib import Path

import gradio as gr
import torch

from app.demo.backend import DemoBackend
from app.demo.layout import CSS, THEME_FONTS, build_demo
from app.uploads import MAX_BYTES, strict_bomb_warnings

TORCH_THREADS = 1  # a single small image gains nothing from intra-op threads, and on a busy machine their
#                    spin-waits cost 10-30x (measured with bench/demo.py --threads 2)


def launch(root: Path, host: str = "127.0.0.1", port: int = 7860, root_path: str | None = None,
           block: bool = True, backend: DemoBackend | None = None) -> gr.Blocks:
    """Serve the demo offline: no share link, no analytics, bound to `host` (loopback by default).

    `block=False` returns once the server is up (tests, benchmarks); `demo.close()` stops it.
    """
    strict_bomb_warnings()
    torch.set_num_threads(TORCH_THREADS)
    demo = build_demo(Path(root), backend)
    theme = gr.themes.Default(font=THEME_FONTS, font_mono=["ui-monospace", "monospace"])
    demo.launch(server_name=host, server_port=port, root_path=root_path, share=False, show_error=False,
                max_file_size=MAX_BYTES, ssr_mode=False, prevent_thread_lock=not block, quiet=not block,
                theme=theme, css=CSS, footer_links=["api"], favicon_path=None)
    return demo


__all__ = ["TORCH_THREADS", "launch"]
