"""`python -m app.demo [--host H] [--port P] [--root-path /demo]`: serve the demo over the cache in $RTX_CACHE.

What `rtx demo` and `rtx serve` start in a subprocess (so `compute` never imports Gradio)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from app.demo.launch import launch
from compute.errors import RtxError
from compute.paths import cache_dir


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m app.demo", description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1", help="interface to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=7860, help="port (default 7860)")
    parser.add_argument("--root-path", default=None, help="URL prefix behind a reverse proxy, e.g. /demo")
    args = parser.parse_args(argv)
    try:
        launch(cache_dir(), host=args.host, port=args.port, root_path=args.root_path)
    except RtxError as err:
        print(f"rtx demo: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
