"""Bad input stops at the door (issue 23): one line on stderr, exit status 2, no traceback, the cache unchanged.

`test_every_flag_refuses_wrong_values` walks the parser `rtx` builds (every command of `compute.cli.registry()`,
every flag and positional argument), so a command or flag added later is covered without editing this file: each
hostile value a flag's own type refuses (negative, zero, huge, wrong type, unknown name, missing path, empty) must
give that one line naming the flag and its valid range or choices. Every flag that takes a value must refuse at
least one of them. The rows of the issue's table are tests of their own, on a cache holding the `tiny` sources.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

from compute.cache import CacheWriter
from compute.cli import build_parser, main, registry
from compute.paths import DB_NAME, snapshot_path
from tests.conftest import record_random_source

ROOT = Path(__file__).resolve().parents[1]
MISSING = "/nonexistent/rtx-test/missing"
# negative, zero, huge (past int64 and float), wrong type, unknown name, missing path, empty, a device not here
HOSTILE = ("-1", "-0.5", "0", str(2**64), "1e999", "nan", "abc", "1.5", "nosuch", MISSING, "", "cuda:99")


@pytest.fixture(scope="module")
def tiny_sources(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A cache holding two sources named as the `tiny` preset's (random weights: no training needed here)."""
    root = tmp_path_factory.mktemp("tiny-sources")
    with CacheWriter(root) as writer:
        record_random_source(writer, "natural", 0)
        record_random_source(writer, "l2_1.5", 1, "l2:1.5")
    return root


def fingerprint(root: Path) -> dict[str, str]:
    """Every file under `root` with the hash of its bytes."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def one_line(capsys) -> str:
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert err and "\n" not in err and "Traceback" not in err, err
    return err


# --- the walk over every flag of every command ----------------------------------------------------------------
def _commands() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return {"": parser, **action.choices}  # "" = the top-level flags (--cache)


def _value_actions(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    """Flags and positionals that take a value (not --help, store_true or the sub-command)."""
    return [a for a in parser._actions if a.nargs != 0 and not isinstance(a, argparse._SubParsersAction)]


def _refuses(action: argparse.Action, value: str) -> bool:
    """Whether the flag's own type (or choices) refuses `value` at parse time."""
    try:
        converted = action.type(value) if action.type else value
    except (argparse.ArgumentTypeError, ValueError, TypeError):
        return True
    return action.choices is not None and converted not in action.choices


def _valid(action: argparse.Action, existing_file: Path) -> str:
    """A value the action accepts (for the required arguments beside the one under test)."""
    return next(v for v in ("x", str(existing_file), "1") if not _refuses(action, v))


def _argv(command: str, parser: argparse.ArgumentParser, action: argparse.Action, value: str, cache: Path,
          existing_file: Path) -> list[str]:
    head = ["--cache", str(cache)] if action.dest != "cache" else []
    others: list[str] = []
    for other in _value_actions(parser):
        if other is not action and other.required:
            others += ([other.option_strings[0]] if other.option_strings else []) + [_valid(other, existing_file)]
    under_test = [f"{action.option_strings[0]}={value}"] if action.option_strings else ["--", value]
    if not command:  # a top-level flag: any command after it
        return [*head, *under_test, "status"]
    # a positional goes after "--" (so that "-1" stays a value), the required flags before it
    return [*head, command, *others, *under_test]


def _cases() -> list[tuple[str, str]]:
    return [(command, action.dest) for command, parser in _commands().items() for action in _value_actions(parser)]


def test_the_walk_covers_every_command_and_flag() -> None:
    cases = _cases()
    assert set(_commands()) == {"", *registry()}  # every registered command, the ones added later too
    assert ("finetune", "sizes") in cases and ("explore", "port") in cases and ("", "cache") in cases
    assert ("import-source", "path") in cases  # positionals too


@pytest.mark.parametrize(("command", "dest"), _cases())
def test_every_flag_refuses_wrong_values(command: str, dest: str, tiny_sources: Path, tmp_path: Path,
                                         capsys) -> None:
    parser = _commands()[command]
    action = next(a for a in _value_actions(parser) if a.dest == dest)
    name = action.option_strings[0] if action.option_strings else (action.metavar or action.dest)
    existing_file = tmp_path / "file.pt"
    existing_file.write_bytes(b"not a checkpoint")
    refused = [value for value in HOSTILE if _refuses(action, value)]
    assert refused, f"{command} {name} accepts every hostile value: give it a type from compute.cli.values"
    before = fingerprint(tiny_sources)
    for value in refused:
        argv = _argv(command, parser, action, value, tiny_sources, existing_file)
        assert main(argv) == 2, argv
        err = one_line(capsys)
        assert name in err, (argv, err)
        assert "expected" in err or "valid choices" in err, (argv, err)
    assert fingerprint(tiny_sources) == before


def test_a_sample_through_a_real_process(tiny_sources: Path) -> None:
    """What a shell sees: `python -m compute.cli` exits 2 with one line and no traceback."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    before = fingerprint(tiny_sources)
    for argv in (["explore", "--port", "99999"],):  # one: a process starts in seconds (torch), the walk is in-process
        result = subprocess.run([sys.executable, "-m", "compute.cli", "--cache", str(tiny_sources), *argv], cwd=ROOT,
                                env=env, capture_output=True, text=True, timeout=120)
        err = result.stderr.strip()
        assert result.returncode == 2 and "\n" not in err and "Traceback" not in err, result.stderr
        assert argv[-2] in err and result.stdout == ""
    assert fingerprint(tiny_sources) == before


# --- the issue's table, row by row ----------------------------------------------------------------------------
TABLE = [
    (["finetune", "--preset", "tiny", "--targets", "nosuch"], ["--targets", "unknown dataset 'nosuch'", "digits"]),
    (["finetune", "--preset", "tiny", "--targets", "folder:/nonexistent"], ["--targets", "/nonexistent", "exist"]),
    (["finetune", "--preset", "tiny", "--sizes", "-5"], ["--sizes", "'all' or a whole number from 1"]),
    (["finetune", "--preset", "tiny", "--sizes", "100000"], ["--sizes", "exceeds the 1437 training images of digits"]),
    (["finetune", "--preset", "tiny", "--blocks", "99"], ["--blocks", "have 4 blocks", "use 0 to 4"]),
    (["influence", "--preset", "tiny", "--cutoff", "-1"], ["--cutoff", "[0, 1)"]),
    (["influence", "--preset", "tiny", "--n-test", "0"], ["--n-test", "from 1 to"]),
    (["explore", "--port", "99999"], ["--port", "from 1 to 65535"]),
]


@pytest.mark.parametrize(("argv", "words"), TABLE, ids=[" ".join(argv) for argv, _ in TABLE])
def test_each_row_of_the_issue_is_one_line_before_any_work(argv: list[str], words: list[str], tiny_sources: Path,
                                                           capsys) -> None:
    _refused_in_one_line(argv, words, tiny_sources, capsys)


def _refused_in_one_line(argv: list[str], words: list[str], cache: Path, capsys) -> None:
    """Exit 2, one line on stderr holding every word, the cache byte for byte unchanged."""
    before = fingerprint(cache)
    assert main(["--cache", str(cache), *argv]) == 2
    err = one_line(capsys)
    for word in words:
        assert word in err, err
    assert fingerprint(cache) == before


def test_all_problems_of_a_plan_come_in_one_message(tiny_sources: Path, capsys) -> None:
    before = fingerprint(tiny_sources)
    code = main(["--cache", str(tiny_sources), "finetune", "--preset", "tiny", "--sizes", "5,20,100000", "--blocks",
                 "1,9", "--sources", "natural,nosuch", "--targets", "digits,digits+lowres(99)"])
    err = one_line(capsys)
    assert code == 2 and "5 input(s) missing or wrong" in err, err
    for word in ("subset size 5", "smaller than the 10 labels", "subset size 100000", "blocks 9", "'nosuch'",
                 "lowres(99) needs 0 < R <= 8"):
        assert word in err, err
    assert fingerprint(tiny_sources) == before


@pytest.mark.parametrize(("argv", "words"), [
    (["influence", "--preset", "tiny", "--run", "nosuch1", "--run", "nosuch2"], ["'nosuch1'", "'nosuch2'", "--run"]),
    (["influence", "--run", "l2_1.5 · digits · 40 images"], ["--run", "not a run label", "N images · seed S"]),
    (["influence", "--preset", "tiny", "--sources", "l2_1.5,nosuch"], ["'nosuch'", "valid choices: l2_1.5, natural"]),
    (["featviz", "--preset", "tiny", "--units", "0,500"], ["unit 500", "128 penultimate units"]),
    (["train-source", "--name", "mine", "--dataset", "digits", "--train-size", "5000"], ["--train-size", "1437"]),
    (["train-source", "--preset", "tiny", "--only", "nosuch"], ["--only", "'nosuch'"]),
    (["finetune", "--preset", "demo"], ["source models missing from the cache: l2_0.1", "holds l2_1.5, natural",
                                      "rtx precompute --stages sources"]),
])
def test_plan_problems_of_other_commands(argv: list[str], words: list[str], tiny_sources: Path, capsys) -> None:
    _refused_in_one_line(argv, words, tiny_sources, capsys)


# --- a damaged cache ------------------------------------------------------------------------------------------
def _copy(source: Path, target: Path) -> Path:
    import shutil

    shutil.copytree(source, target)
    return target


def test_a_truncated_database_is_diagnosed_with_the_recovery(tiny_sources: Path, tmp_path: Path, capsys) -> None:
    cache = _copy(tiny_sources, tmp_path / "cache")
    db = cache / DB_NAME
    with open(db, "r+b") as fh:
        fh.truncate(5000)  # "Could not read enough bytes" (the issue's row)
    before = fingerprint(cache)
    assert main(["--cache", str(cache), "precompute", "--preset", "tiny", "--stages", "finetune", "--sizes", "20",
                 "--seeds", "1", "--no-progress"]) == 2
    err = one_line(capsys)
    assert f"{db} is damaged" in err and "Could not read enough bytes" in err, err
    assert "writing" not in err and "lock" not in err  # no writer is blamed
    assert str(snapshot_path(cache)) in err and "(written " in err and "--cache" in err and "-fresh" in err
    assert fingerprint(cache) == before
    command = err.split("can replace it: `")[1].split("`")[0]  # the exact recovery the message gives
    subprocess.run(command, shell=True, check=True)
    with CacheWriter(cache) as writer:
        assert set(writer.source_checksums()) == {"natural", "l2_1.5"}


def test_a_file_that_is_not_duckdb_and_no_snapshot_says_start_afresh(tmp_path: Path, capsys) -> None:
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / DB_NAME).write_bytes(b"this is not a database" * 100)
    assert main(["--cache", str(cache), "status", "--clear-failed"]) == 2
    err = one_line(capsys)
    assert "is damaged" in err and "no snapshot" in err and ".damaged" in err and "-fresh" in err, err
    assert "writing" not in err


def test_a_damaged_snapshot_is_said_so(tiny_sources: Path, tmp_path: Path, capsys) -> None:
    cache = _copy(tiny_sources, tmp_path / "cache")
    for path in (cache / DB_NAME, snapshot_path(cache)):
        with open(path, "r+b") as fh:
            fh.truncate(5000)
    assert main(["--cache", str(cache), "status", "--clear-failed"]) == 2
    err = one_line(capsys)
    assert "is damaged" in err and "snapshot" in err and "damaged too" in err, err


def test_a_lock_held_by_another_process_names_it(tmp_path: Path, capsys) -> None:
    proc = subprocess.Popen([sys.executable, "-m", "tests.helpers.slow_writer", str(tmp_path), "50", "0.1"], cwd=ROOT,
                            stdout=subprocess.PIPE, text=True)
    try:
        proc.stdout.readline()
        assert main(["--cache", str(tmp_path), "status", "--clear-failed"]) == 2
        err = one_line(capsys)
    finally:
        proc.kill()
        proc.wait()
    assert f"process {proc.pid}" in err and "holds its lock" in err and f"kill {proc.pid}" in err, err
    assert "damaged" not in err


# --- run-time failures: their reasons in the summary line, listed and cleared by `rtx status` -----------------
def test_run_time_failures_are_summarised_listed_and_cleared(tiny_sources: Path, tmp_path: Path, monkeypatch,
                                                             capsys) -> None:
    import compute.sweep
    from compute.data.sampler import paper_seeds

    cache = _copy(tiny_sources, tmp_path / "cache")
    real = compute.sweep.finetune

    def flaky(model, cfg, **kwargs):  # the tiny grid: sizes 20 and 40, two seeds, two sources
        if cfg.n_train == 20:
            raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")
        if cfg.seed == paper_seeds(1)[0] and cfg.source == "natural":
            raise ValueError("a crash")
        return real(model, cfg, **kwargs)

    monkeypatch.setattr(compute.sweep, "finetune", flaky)
    argv = ["--cache", str(cache), "finetune", "--preset", "tiny", "--epochs", "1", "--workers", "1",
            "--no-progress"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "8 planned, 0 already cached, 3 run, 5 failed" in out, out
    assert "4 x RuntimeError: CUDA out of memory" in out and "1 x ValueError: a crash" in out, out
    assert "`rtx status --failed`" in out

    assert main(["--cache", str(cache), "status"]) == 0
    assert "5 failed run(s)" in capsys.readouterr().out
    assert main(["--cache", str(cache), "status", "--failed"]) == 0
    listed = capsys.readouterr().out
    assert listed.count("RuntimeError: CUDA out of memory") == 4 and listed.count("ValueError: a crash") == 1

    monkeypatch.setattr(compute.sweep, "finetune", real)  # the re-run succeeds: the failed rows are replaced
    assert main([*argv[:-1], "--sizes", "40", "--no-progress"]) == 0
    assert "1 run, 0 failed" in capsys.readouterr().out
    assert main(["--cache", str(cache), "status", "--failed"]) == 0
    assert capsys.readouterr().out.count("\n") == 1 + 4  # header + the four runs of size 20
    assert main(["--cache", str(cache), "status", "--clear-failed"]) == 0
    assert "forgot 4 failed run(s)" in capsys.readouterr().out
    assert main(["--cache", str(cache), "status", "--failed"]) == 0
    assert "no failed runs" in capsys.readouterr().out


def test_a_failed_run_superseded_by_a_later_success_stays_out_of_every_listing(tmp_path: Path) -> None:
    """Same job, new source checksum (the source was retrained): the later success supersedes the failure; a failure
    of another configuration stays."""
    from dataclasses import asdict, replace

    from compute.cache import CacheReader
    from compute.finetune import FinetuneConfig
    from compute.records import RunRecord

    old = FinetuneConfig("natural", "sum-a", "digits", 20, 1, 1, 4, 2)
    new, other = replace(old, source_checksum="sum-b"), replace(old, epochs=5)

    def row(cfg: FinetuneConfig, status: str) -> RunRecord:
        return RunRecord(cfg.key, status, cfg.source, cfg.target, cfg.n_train, cfg.seed, cfg.blocks, cfg.epochs,
                         asdict(cfg), tuple(range(20)) if status == "done" else None, final_test_acc=0.5,
                         error="RuntimeError: boom | trace" if status == "failed" else None)

    with CacheWriter(tmp_path) as writer:
        writer.record_run(row(old, "failed"), [])
        writer.record_run(row(other, "failed"), [])
        writer.record_run(row(new, "done"), [])
    reader = CacheReader(tmp_path)
    assert set(reader.runs()["key"]) == {new.key, other.key}
    assert reader.failed_runs()["key"].tolist() == [other.key]
    assert reader.run_counts()["runs"].sum() == 2
    counts = dict(zip(reader.counts()["table"], reader.counts()["rows"], strict=True))
    assert counts["runs"] == 2


def test_the_summary_names_the_most_frequent_errors_first() -> None:
    from compute.sweep import FAILURES_SHOWN, SweepCounts

    errors = ("A: x",) * 3 + ("B: y",) * 5 + ("C: z", "D: w", "E: v")
    line = SweepCounts(11, 0, 0, 11, errors).line()
    assert line.startswith("11 planned, 0 already cached, 0 run, 11 failed; 5 x B: y, 3 x A: x")
    assert f"and {len(set(errors)) - FAILURES_SHOWN} other error(s)" in line and "rtx status --failed" in line
    assert SweepCounts(2, 2, 0, 0).line() == "2 planned, 2 already cached, 0 run, 0 failed"


def test_a_dry_run_plans_a_folder_target(tiny_sources: Path, tmp_path: Path, capsys) -> None:
    """--dry-run over folder:PATH printed a KeyError traceback (the plan's cost table looked the name up in the
    registry's dict); now it prints the plan and writes nothing."""
    from PIL import Image

    for label in ("a", "b"):
        (tmp_path / "pets" / label).mkdir(parents=True)
        for i in range(6):
            Image.new("RGB", (16, 16), (40 * i, 0, 0)).save(tmp_path / "pets" / label / f"{i}.png")
    before = fingerprint(tiny_sources)
    assert main(["--cache", str(tiny_sources), "finetune", "--preset", "tiny", "--targets", f"folder:{tmp_path}/pets",
                 "--sizes", "4", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "tiny: 4 fine-tunes" in out and f"folder:{tmp_path}/pets" in out
    assert fingerprint(tiny_sources) == before
