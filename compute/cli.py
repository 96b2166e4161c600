"""The `rtx` command. The only place that parses arguments; it builds config dataclasses and calls down.

Every sub-command is a `cmd_*` function plus a parser block in `build_parser`; user errors (`RtxError`)
print one line and exit with status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from compute.errors import RtxError

Command = Callable[[argparse.Namespace], int]


def _csv(kind: Callable[[str], object] = str) -> Callable[[str], tuple]:
    def parse(text: str) -> tuple:
        return tuple(kind(part) for part in text.split(",") if part.strip())

    return parse


def _size(text: str) -> int | None:
    return None if text == "all" else int(text)


def _root(args: argparse.Namespace) -> Path:
    from compute.paths import cache_dir

    return cache_dir(args.cache)


# --- status ---------------------------------------------------------------------------------------------
def cmd_status(args: argparse.Namespace) -> int:
    """Print where the cache is and what it holds."""
    from compute.cache import CacheReader, db_path

    root = _root(args)
    reader = CacheReader(root)
    print(f"cache: {root}  (database {db_path(root).name}, snapshot {'present' if not reader.empty else 'none yet'})")
    print(reader.counts().to_string(index=False))
    sources = reader.source_models()
    if not sources.empty:
        print("\nsource models:")
        print(sources[["name", "arch", "constraint_", "attack_steps", "source_dataset", "clean_acc"]].to_string(index=False))
    targets = reader.targets()
    print(f"\ntargets with fine-tunes: {', '.join(targets) if targets else 'none (run `rtx precompute --preset demo`)'}")
    return 0


# --- datasets -------------------------------------------------------------------------------------------
def cmd_datasets(args: argparse.Namespace) -> int:
    """List the dataset registry: classes, sizes, channels, where each is found."""
    import pandas as pd

    from compute.data import dataset_names, describe
    from compute.settings import Settings

    root = Settings.from_env().data_root
    print(pd.DataFrame([describe(n, root) for n in dataset_names()]).to_string(index=False))
    return 0


# --- precompute / finetune ------------------------------------------------------------------------------
def _sweep_options(args: argparse.Namespace):
    from compute.settings import Settings

    return Settings.from_env(executor=args.executor, address=args.address, device=args.device, workers=args.workers,
                             progress=not args.no_progress, keep_models=args.keep_models, max_runs=args.max_runs,
                             checkpoint_dir=getattr(args, "checkpoint_dir", None),
                             trust_pickle=getattr(args, "trust_pickle", False), data_root=args.data_root,
                             download=args.download)


def _preset_from_args(args: argparse.Namespace):
    """The preset with CLI overrides; with --download, fetches its targets through torchvision first."""
    from compute.data import load_dataset
    from compute.presets import get_preset

    settings = _sweep_options(args)
    preset = get_preset(args.preset).with_overrides(
        targets=args.targets, sizes=args.sizes, seeds=args.seeds, blocks=args.blocks, sources=args.sources,
        epochs=args.epochs, test_every=args.test_every,
    )
    if args.download:
        for target in sorted({t for grid in preset.grids for t in grid.targets}):
            for split in ("train", "test"):
                load_dataset(target, split, settings.data_root, download=True)
    return preset


def cmd_precompute(args: argparse.Namespace) -> int:
    """Run every stage of a preset (or the ones named by --stages), resuming from the cache."""
    from compute.sweep import STAGES, precompute

    preset = _preset_from_args(args)
    precompute(preset, _root(args), _sweep_options(args), args.stages or STAGES)
    return 0


def cmd_finetune(args: argparse.Namespace) -> int:
    """Only the fine-tuning stage of a preset (its sources must already be in the cache)."""
    from compute.cache import CacheWriter
    from compute.sweep import finetune_stage

    with CacheWriter(_root(args)) as writer:
        counts = finetune_stage(_preset_from_args(args), writer, _sweep_options(args))
    print(f"{counts['planned']} planned, {counts['cached']} already cached, {counts['done']} run, {counts['failed']} failed")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    """Start the explorer and the demo together (what `make demo` ends with); Ctrl-C stops both."""
    require_free_port(args.host, args.explorer_port, "--explorer-port")
    require_free_port(args.host, args.demo_port, "--demo-port")
    print(f"explorer: http://{args.host}:{args.explorer_port}   demo: http://{args.host}:{args.demo_port}   (Ctrl-C stops)")
    return _supervise(_root(args), {"explorer": explorer_command(args.explorer_port, args.host, None),
                                    "demo": demo_command(args.demo_port, args.host)})


def _supervise(root: Path, commands: dict[str, list[str]]) -> int:
    """Run the apps over cache `root` until one stops, Ctrl-C or SIGTERM; then stop them all (no orphans).

    Returns the exit code of the app that stopped first (0 after Ctrl-C).
    """
    import signal
    import subprocess
    import time

    env = {**os.environ, "RTX_CACHE": str(root)}
    procs = {name: subprocess.Popen(argv, env=env) for name, argv in commands.items()}
    previous = signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # `kill` runs the `finally` below
    try:
        while True:
            for name, proc in procs.items():
                code = proc.poll()
                if code is not None:
                    if len(procs) > 1:
                        print(f"rtx: the {name} stopped (exit code {code}); stopping the others", file=sys.stderr)
                    return code
            time.sleep(0.5)
    except KeyboardInterrupt:
        return 0
    finally:
        for proc in procs.values():
            proc.terminate()
        for proc in procs.values():
            proc.wait()
        signal.signal(signal.SIGTERM, previous)


def require_free_port(host: str, port: int, flag: str) -> None:
    """Refuse a taken port up front with a one-line error, instead of a server traceback half-way through start-up."""
    import socket

    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the servers do: TIME_WAIT is not "taken"
        try:
            sock.bind((host, port))
        except OSError as err:
            raise RtxError(f"cannot serve on {host}:{port} ({err.strerror}); stop the program using it "
                           f"(another `rtx serve`?) or pass {flag} N") from err


# --- demo -----------------------------------------------------------------------------------------------
def demo_command(port: int = 7860, host: str = "127.0.0.1", root_path: str | None = None) -> list[str]:
    """The argv that starts the Gradio demo in its own process (for `rtx serve`); the cache comes from RTX_CACHE."""
    argv = [sys.executable, "-m", "compute.cli", "demo", "--host", host, "--port", str(port)]
    return argv + (["--root-path", root_path] if root_path else [])


def cmd_demo(args: argparse.Namespace) -> int:
    """Serve the Gradio demo (upload an image, see robust vs natural influential training images)."""
    from app.demo import launch  # the app layer; compute/ itself never imports Gradio

    root = _root(args)
    require_free_port(args.host, args.port, "--port")
    print(f"demo: http://{args.host}:{args.port}{args.root_path or ''}/  (cache {root}; Ctrl-C stops)")
    launch(root, host=args.host, port=args.port, root_path=args.root_path)
    return 0


# --- explore --------------------------------------------------------------------------------------------
def explorer_command(port: int = 8501, host: str = "127.0.0.1", base_path: str | None = None) -> list[str]:
    """The argv that starts the Streamlit explorer in its own process; the cache comes from RTX_CACHE.

    Offline by construction: no usage statistics, no browser opened, no file watcher (the app reloads data
    from the cache snapshot, not from source files). `base_path` serves it under a URL prefix (/explorer).
    """
    app = Path(__file__).resolve().parents[1] / "app" / "explorer.py"
    argv = [sys.executable, "-m", "streamlit", "run", str(app), "--server.port", str(port),
            "--server.address", host, "--server.headless", "true", "--browser.gatherUsageStats", "false",
            "--server.fileWatcherType", "none", "--server.runOnSave", "false", "--client.toolbarMode", "viewer"]
    return argv + (["--server.baseUrlPath", base_path.strip("/")] if base_path and base_path.strip("/") else [])


def cmd_explore(args: argparse.Namespace) -> int:
    """Serve the Streamlit explorer over the cache (read-only; refreshes while `rtx precompute` writes)."""
    root = _root(args)
    require_free_port(args.host, args.port, "--port")
    prefix = f"/{args.base_url_path.strip('/')}" if args.base_url_path else ""
    print(f"explorer: http://{args.host}:{args.port}{prefix}/  (cache {root}; Ctrl-C stops)", flush=True)
    return _supervise(root, {"explorer": explorer_command(args.port, args.host, args.base_url_path)})


# --- influence / featviz --------------------------------------------------------------------------------
def cmd_influence(args: argparse.Namespace) -> int:
    """Influence matrices for the preset's robust and natural fine-tunes of one subset, or for the runs named."""
    from dataclasses import replace

    from compute.cache import CacheWriter
    from compute.influence import InfluenceJob, get_method, influence_stage, run_influence
    from compute.presets import InfluenceSpec, get_preset

    get_method(args.method)
    preset = get_preset(args.preset)
    spec = preset.influence or InfluenceSpec("", 0, 0, 0, ())
    changes = {"n_test": args.n_test, "top_k": args.top_k, "cutoff": args.cutoff, "sources": args.sources}
    spec = replace(spec, **{k: v for k, v in changes.items() if v is not None})
    with CacheWriter(_root(args)) as writer:
        if args.runs:
            for key in args.runs:
                run = writer.done_run(key)
                if run is None:
                    raise RtxError(f"no completed run {key!r} in the cache; `rtx status` lists what it holds")
                job = InfluenceJob(key, args.method, spec.cutoff, spec.n_test, spec.top_k)
                computed = run_influence(writer, run, job, args.device)
                print(f"{key} -> {job.key} ({'computed' if computed else 'already in the cache'})")
        elif preset.influence is None:
            raise RtxError(f"preset {args.preset!r} names no influence runs; pass --runs KEY[,KEY]")
        else:
            influence_stage(replace(preset, influence=spec), writer, device=args.device,
                            progress=not args.no_progress, method=args.method)
    return 0


def cmd_featviz(args: argparse.Namespace) -> int:
    """Activation maximisation of penultimate units from the shipped seed photos, for the preset's sources."""
    from dataclasses import replace

    from compute.cache import CacheWriter
    from compute.featviz import featviz_stage
    from compute.presets import FeatvizSpec, get_preset

    preset = get_preset(args.preset)
    spec = preset.featviz or FeatvizSpec(sources=(preset.natural,))
    changes = {"sources": args.sources, "seed_images": args.seeds, "units": args.units, "steps": args.steps,
               "step_size": args.step_size}
    spec = replace(spec, **{k: v for k, v in changes.items() if v is not None})
    with CacheWriter(_root(args)) as writer:
        featviz_stage(replace(preset, featviz=spec), writer, device=args.device, progress=not args.no_progress)
    return 0


# --- source models: train, import, robustness ------------------------------------------------------------
def _set_threads(args: argparse.Namespace) -> None:
    if getattr(args, "threads", None):
        import torch

        torch.set_num_threads(args.threads)


def cmd_train_source(args: argparse.Namespace) -> int:
    """Train (or load) a preset's source models, or one custom source given by --name/--constraint/..."""
    from compute.cache import CacheWriter
    from compute.presets import SourceSpec, get_preset
    from compute.train_source import ensure_source, sources_stage

    _set_threads(args)
    with CacheWriter(_root(args)) as writer:
        if args.name:
            if args.only:
                raise RtxError("--only selects sources of a preset; drop it when training a custom source with --name")
            from compute.attacks import parse_constraint

            is_pgd = parse_constraint(args.constraint, max(args.steps or 1, 1)).kind == "pgd"
            steps = (3 if args.steps is None else args.steps) if is_pgd else 0
            spec = SourceSpec(args.name, args.arch, args.constraint, steps, args.dataset, epochs=args.epochs,
                              train_size=args.train_size, batch_size=args.batch_size, lr=args.lr)
            row = ensure_source(spec, writer, device=args.device, progress=not args.no_progress)
            print(f"{spec.name}: clean accuracy {row['clean_acc']:.3f}, {row['path']}" if row
                  else f"{spec.name}: already in the cache")
        else:
            from compute.settings import Settings

            sources_stage(get_preset(args.preset), writer, device=args.device, progress=not args.no_progress,
                          checkpoint_dir=Settings.from_env(checkpoint_dir=args.checkpoint_dir).checkpoint_dir,
                          trust_pickle=args.trust_pickle, only=args.only)
    return 0


def cmd_import_source(args: argparse.Namespace) -> int:
    """Register a checkpoint file (ours, torchvision or MadryLab) as a source model in the cache."""
    from compute.cache import CacheWriter
    from compute.train_source import import_source

    _set_threads(args)
    with CacheWriter(_root(args)) as writer:
        row = import_source(args.path, args.name, args.arch, args.constraint, args.steps, args.dataset, writer.root,
                            num_classes=args.num_classes, trust_pickle=args.trust_pickle, measure=args.measure)
        previous = writer.source_row(args.name)
        if previous is not None and previous["checksum"] != row["checksum"]:
            writer.forget_robustness(args.name)
        writer.record_source_model(row)
    print(f"registered {args.name} ({row['arch']}, {row['constraint_']}, {row['meta']['format']} checkpoint) "
          f"as {row['path']}")
    return 0


def cmd_eval_robustness(args: argparse.Namespace) -> int:
    """Clean and PGD(k) accuracy of a preset's sources at several eps, recorded in the cache."""
    from dataclasses import replace

    from compute.cache import CacheWriter
    from compute.presets import get_preset
    from compute.robustness import robustness_stage

    _set_threads(args)
    preset = get_preset(args.preset)
    if args.sources:
        preset = replace(preset, sources=tuple(preset.source(name) for name in args.sources))
    if args.steps is not None:
        preset = replace(preset, robustness_steps=args.steps)
    with CacheWriter(_root(args)) as writer:
        written = robustness_stage(preset, writer, device=args.device, progress=not args.no_progress,
                                   n_images=args.n_images, constraints=args.eps)
    print(f"{written} robustness rows recorded")
    return 0


def _add_preset_argument(p: argparse.ArgumentParser) -> None:
    from compute.presets import preset_names

    p.add_argument("--preset", default="demo", help=f"one of: {', '.join(preset_names())} (default demo)")


def _add_device_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", help="torch device, e.g. cpu or cuda:0 (default: cuda when available)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")


def _add_sweep_arguments(p: argparse.ArgumentParser) -> None:
    from compute.sweep import EXECUTORS

    _add_preset_argument(p)
    p.add_argument("--targets", type=_csv(), help="override the targets, e.g. mnist5k,digits,mnist5k+lowpass(400)")
    p.add_argument("--sizes", type=_csv(_size), help="override subset sizes, e.g. 100,200,all")
    p.add_argument("--seeds", type=_csv(int), help="override seeds (default: the preset's, or the paper's S_k)")
    p.add_argument("--blocks", type=_csv(int), help="override numbers of fine-tuned blocks, e.g. 0,1,3,9")
    p.add_argument("--sources", type=_csv(), help="restrict to these source models")
    p.add_argument("--epochs", type=int, help="override epochs (default: the preset's, or the paper's Table 4)")
    p.add_argument("--test-every", type=int, help="override the test frequency in epochs")
    p.add_argument("--executor", default="local", help=f"one of: {', '.join(EXECUTORS)} (default local)")
    p.add_argument("--workers", type=int, help="local executor: worker processes, one torch thread each "
                   "(default: one per core on a CPU, 1 with a GPU)")
    p.add_argument("--address", help="Ray cluster address for --executor ray (default: start a local Ray)")
    _add_device_arguments(p)
    p.add_argument("--keep-models", action="store_true", help="keep every fine-tuned model's weights in the cache")
    p.add_argument("--max-runs", type=int, help="stop after this many fine-tunes (resume later)")
    p.add_argument("--data-root", help="folder of torchvision datasets (default $RTX_DATA or <cache>/data)")
    p.add_argument("--download", action="store_true", help="download missing torchvision targets first (needs internet)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rtx",
        description="Robust Transfer Explorer: fine-tune natural and robust source models, record the results "
        "in a DuckDB cache, and explore them.",
    )
    parser.add_argument("--cache", default=None, help="cache directory (default: $RTX_CACHE or ./cache)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("status", help="what the cache holds and where it is")
    p.set_defaults(func=cmd_status)

    p = sub.add_parser("datasets", help="the dataset registry (classes, sizes, where found)")
    p.set_defaults(func=cmd_datasets)

    p = sub.add_parser("precompute", help="run a preset: sources, robustness, fine-tunes, influence, featviz")
    _add_sweep_arguments(p)
    p.add_argument("--stages", type=_csv(), help="only these stages, in order: "
                   "sources,robustness,thumbnails,finetune,influence,featviz")
    p.add_argument("--checkpoint-dir", help="folder with the preset's checkpoint files (paper: resnet50-0676ba61.pth, "
                   "imagenet_l2_3_0.pt, imagenet_linf_4.pt, imagenet_linf_8.pt); default $RTX_CHECKPOINTS")
    p.add_argument("--trust-pickle", action="store_true", help="allow checkpoints that need pickle (runs code from "
                   "the file: only for files you trust)")
    p.set_defaults(func=cmd_precompute)

    p = sub.add_parser("finetune", help="only the fine-tuning sweep of a preset")
    _add_sweep_arguments(p)
    p.set_defaults(func=cmd_finetune)

    p = sub.add_parser("serve", help="start the explorer and the demo together")
    p.add_argument("--host", default="127.0.0.1", help="interface to bind (default 127.0.0.1)")
    p.add_argument("--explorer-port", type=int, default=8501)
    p.add_argument("--demo-port", type=int, default=7860)
    p.set_defaults(func=cmd_serve)

    # COMMANDS: sub-commands added below this line by each area (keep one block per command).

    p = sub.add_parser("explore", help="serve the Streamlit explorer: the paper's figures from the cache")
    p.add_argument("--host", default="127.0.0.1", help="interface to bind (default 127.0.0.1, this machine only)")
    p.add_argument("--port", type=int, default=8501, help="port (default 8501)")
    p.add_argument("--base-url-path", default=None, help="URL prefix when served behind a reverse proxy, e.g. /explorer")
    p.set_defaults(func=cmd_explore)

    p = sub.add_parser("demo", help="serve the Gradio demo: an image's most influential training images")
    p.add_argument("--host", default="127.0.0.1", help="interface to bind (default 127.0.0.1, this machine only)")
    p.add_argument("--port", type=int, default=7860, help="port (default 7860)")
    p.add_argument("--root-path", default=None, help="URL prefix when served behind a reverse proxy, e.g. /demo")
    p.set_defaults(func=cmd_demo)

    from compute.influence import method_names

    p = sub.add_parser("influence", help="influence matrices, top-k and on-demand query data for robust vs natural")
    _add_preset_argument(p)
    p.add_argument("--method", default="fast", help=f"one of: {', '.join(method_names())} (default fast)")
    p.add_argument("--cutoff", type=float, help="relative eigenvalue cut-off of the pseudo-inverse (default: the "
                   "preset's, 5e-2 as the authors' script; the paper's text says 1e-20)")
    p.add_argument("--n-test", type=int, help="score the first N test images (default: the preset's)")
    p.add_argument("--top-k", type=int, help="most influential training images stored per test image")
    p.add_argument("--sources", type=_csv(), help="override the preset's sources, e.g. l2_1.5,natural")
    p.add_argument("--runs", type=_csv(), help="instead of the preset's cell, these fine-tune run keys")
    _add_device_arguments(p)
    p.set_defaults(func=cmd_influence)

    p = sub.add_parser("featviz", help="feature visualisation: maximise penultimate units from seed photos")
    _add_preset_argument(p)
    p.add_argument("--sources", type=_csv(), help="source models (default: the preset's)")
    p.add_argument("--seeds", type=_csv(), help="seed photos from assets/seeds, e.g. chelsea,coffee,rocket")
    p.add_argument("--units", type=_csv(int), help="penultimate-layer units, e.g. 0,1,2")
    p.add_argument("--steps", type=int, help="gradient-ascent steps (default: the preset's)")
    p.add_argument("--step-size", type=float, help="RMS pixel change per step (default: the preset's)")
    _add_device_arguments(p)
    p.set_defaults(func=cmd_featviz)

    from compute.robustness import DEMO_N_IMAGES

    p = sub.add_parser("train-source", help="train (or load) source models: a preset's, or one given by --name")
    _add_preset_argument(p)
    p.add_argument("--only", type=_csv(), help="only these sources of the preset, e.g. natural,l2_1.5")
    p.add_argument("--name", help="train one custom source with this name instead of a preset's")
    p.add_argument("--arch", default="small_resnet", help="architecture of a custom source (default small_resnet)")
    p.add_argument("--dataset", default="fmnist", help="training dataset of a custom source (default fmnist)")
    p.add_argument("--constraint", default="none", help="none, l2:EPS, linf:EPS (e.g. linf:4/255) or gaussian:SIGMA")
    p.add_argument("--steps", type=int, help="k of PGD(k) adversarial training (default 3; 1 = PGD(1))")
    p.add_argument("--epochs", type=int, default=2, help="training epochs of a custom source (default 2)")
    p.add_argument("--train-size", type=int, help="train on a seeded subset of N images (default: all)")
    p.add_argument("--batch-size", type=int, default=128, help="SGD batch size (default 128, the paper's)")
    p.add_argument("--lr", type=float, default=0.1, help="initial learning rate (default 0.1, the paper's)")
    p.add_argument("--checkpoint-dir", help="folder holding a preset's checkpoint files, e.g. imagenet_l2_3_0.pt "
                   "(default: $RTX_CHECKPOINTS or <cache>/checkpoints)")
    p.add_argument("--trust-pickle", action="store_true", help="allow checkpoints that need pickle (runs code "
                   "from the file: only for files you trust)")
    p.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    _add_device_arguments(p)
    p.set_defaults(func=cmd_train_source)

    p = sub.add_parser("import-source", help="register a checkpoint file (torchvision, MadryLab or ours) as a source")
    p.add_argument("path", help="the checkpoint file (.pth, .pt, .ckpt or .safetensors with its .json sidecar)")
    p.add_argument("--name", required=True, help="source model name, e.g. l2_3")
    p.add_argument("--arch", help="architecture, e.g. resnet50 (default: read from the file's keys)")
    p.add_argument("--constraint", default="none", help="how it was trained: none, l2:3, linf:4/255, gaussian:1, ...")
    p.add_argument("--steps", type=int, default=0, help="k of the PGD(k) it was trained with (MadryLab: 20)")
    p.add_argument("--dataset", default="imagenet", help="the dataset it was trained on (default imagenet)")
    p.add_argument("--num-classes", type=int, help="output classes (default: read from fc.weight)")
    p.add_argument("--trust-pickle", action="store_true", help="allow files that need pickle (runs code from "
                   "the file: only for files you trust)")
    p.add_argument("--measure", action="store_true", help="measure clean accuracy on --dataset when available offline")
    p.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    p.set_defaults(func=cmd_import_source)

    p = sub.add_parser("eval-robustness", help="clean and PGD(k) accuracy of a preset's sources at several eps")
    _add_preset_argument(p)
    p.add_argument("--sources", type=_csv(), help="only these sources of the preset")
    p.add_argument("--eps", type=_csv(), help="constraints instead of the preset's, e.g. l2:0.5,l2:1.5,linf:4/255")
    p.add_argument("--steps", type=int, help="k of PGD(k) (default: the preset's, 3 as the paper's Table 1b)")
    p.add_argument("--n-images", type=int, default=DEMO_N_IMAGES,
                   help=f"evaluate on the first N test images (default {DEMO_N_IMAGES})")
    p.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    _add_device_arguments(p)
    p.set_defaults(func=cmd_eval_robustness)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.cache:
        os.environ["RTX_CACHE"] = str(Path(args.cache).resolve())
    try:
        return int(args.func(args) or 0)
    except RtxError as err:
        print(f"rtx: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("rtx: interrupted; completed work is kept in the cache, re-run the same command to resume",
              file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
