"""`rtx explore`, `rtx demo`, `rtx serve`: the apps over the cache, each in its own process."""

from __future__ import annotations

import argparse

from compute.cli.args import Command, add_host, add_serving, root
from compute.cli.processes import demo_command, explorer_command, require_free_port, supervise
from compute.cli.values import PORT


def _serve_arguments(p: argparse.ArgumentParser) -> None:
    add_host(p)
    p.add_argument("--explorer-port", type=PORT, default=8501, help="the explorer's port (default 8501)")
    p.add_argument("--demo-port", type=PORT, default=7860, help="the demo's port (default 7860)")


def cmd_serve(args: argparse.Namespace) -> int:
    """Start the explorer and the demo together (what `make demo` ends with); Ctrl-C stops both."""
    require_free_port(args.host, args.explorer_port, "--explorer-port")
    require_free_port(args.host, args.demo_port, "--demo-port")
    print(f"explorer: http://{args.host}:{args.explorer_port}   demo: http://{args.host}:{args.demo_port}   (Ctrl-C stops)")
    return supervise(root(args), {"explorer": explorer_command(args.explorer_port, args.host, None),
                                  "demo": demo_command(args.demo_port, args.host)})


def cmd_explore(args: argparse.Namespace) -> int:
    """Serve the Streamlit explorer over the cache (read-only; refreshes while `rtx precompute` writes)."""
    cache = root(args)
    require_free_port(args.host, args.port, "--port")
    prefix = f"/{args.base_url_path.strip('/')}" if args.base_url_path else ""
    print(f"explorer: http://{args.host}:{args.port}{prefix}/  (cache {cache}; Ctrl-C stops)", flush=True)
    return supervise(cache, {"explorer": explorer_command(args.port, args.host, args.base_url_path)})


def cmd_demo(args: argparse.Namespace) -> int:
    """Serve the Gradio demo (upload an image, see robust vs natural influential training images)."""
    cache = root(args)
    require_free_port(args.host, args.port, "--port")
    print(f"demo: http://{args.host}:{args.port}{args.root_path or ''}/  (cache {cache}; Ctrl-C stops)", flush=True)
    return supervise(cache, {"demo": demo_command(args.port, args.host, args.root_path)})


COMMANDS = [
    Command("serve", "start the explorer and the demo together", _serve_arguments, cmd_serve),
    Command("explore", "serve the Streamlit explorer: the paper's figures from the cache",
            lambda p: add_serving(p, 8501, "--base-url-path", "/explorer"), cmd_explore),
    Command("demo", "serve the Gradio demo: an image's most influential training images",
            lambda p: add_serving(p, 7860, "--root-path", "/demo"), cmd_demo),
]
