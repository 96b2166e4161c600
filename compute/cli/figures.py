"""`rtx figures`: the paper's figure set from a cache as SVG, PDF and CSV files (app/figures.py draws them)."""

from __future__ import annotations

import argparse
import logging
import shlex
import sys
from pathlib import Path

from compute.cli.args import Command, root
from compute.cli.values import PathValue
from compute.errors import RtxError


def _figures_arguments(p: argparse.ArgumentParser) -> None:
    # SUPPRESS: absent here, `rtx --cache DIR figures` keeps the global flag's value
    p.add_argument("--cache", default=argparse.SUPPRESS, type=PathValue("folder", must_exist=False),
                   help="cache directory to read (default: $RTX_CACHE or ./cache)")
    p.add_argument("--out", required=True, type=PathValue("folder", must_exist=False),
                   help="folder for the files (created; existing figures are replaced)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def cmd_figures(args: argparse.Namespace) -> int:
    """Write Fig. 2a/2b, 3a/3b, 4a/4b, 5, 7a/7b, the budget curve and Table 7 vs here, as far as the cache backs them."""
    from compute.cache import snapshot_path

    cache = root(args)
    if not snapshot_path(cache).exists():
        raise RtxError(f"no published results in {cache}: fill it with `rtx precompute --preset demo` "
                       "(or pass --cache DIR, e.g. a cache copied back from a cluster)")
    # app.data's st.cache_data warns "No runtime found" on each read outside a Streamlit server, as expected here;
    # a filter, not a level: Streamlit resets its loggers' levels when it loads its config
    logging.getLogger("streamlit.runtime.caching.cache_data_api").addFilter(
        lambda record: "No runtime found" not in record.getMessage())
    from app.figures import write_figures  # Streamlit, Altair and vl-convert: only for this command

    out = Path(args.out).expanduser().resolve()
    command = f"rtx figures --cache {shlex.quote(str(cache))} --out {shlex.quote(str(out))}"
    written = write_figures(cache, out, command, progress=not args.no_progress)
    names = sorted({f.figure for f in written})
    print(f"{len(names)} figures, {len(written)} files in {out}: {', '.join(names)}", file=sys.stdout)
    return 0


COMMANDS = [Command("figures", "write the paper's figures from the cache as SVG, PDF and CSV files",
                    _figures_arguments, cmd_figures)]
