"""Why the cache's database did not open, and how to recover: a lock held by another process, or a damaged file.

DuckDB says both with an IOException. A lock names its holder ("Conflicting lock is held in PROGRAM (PID N)"):
the user waits for that process or stops it. Anything else (a truncated file, "Could not read enough bytes", or
a file that is not DuckDB's) means the file is damaged, and no writer is involved: the recovery is the last
snapshot the writer published beside it (`rtx.snapshot.duckdb`, a complete copy taken after each recorded
job), checked here by opening it read-only, or a fresh cache beside the damaged one.
"""

from __future__ import annotations

import re
import shlex
import time
from pathlib import Path

import duckdb

from compute import paths
from compute.errors import RtxError

_HOLDER = re.compile(r"held in (?P<program>.+?) \(PID (?P<pid>\d+)\)")
LOCK_WORDS = ("could not set lock", "conflicting lock")


def is_lock_error(err: BaseException) -> bool:
    """True when DuckDB refused the file because another process holds its lock."""
    text = str(err).lower()
    return isinstance(err, duckdb.IOException) and any(word in text for word in LOCK_WORDS)


def snapshot_state(root: Path) -> tuple[bool, str]:
    """(readable, description) of the snapshot beside the database: when it was written and how many runs it
    holds, or why it cannot serve (missing, damaged)."""
    snap = paths.snapshot_path(root)
    if not snap.exists():
        return False, f"there is no snapshot ({snap.name}) beside it"
    con = duckdb.connect()  # a fresh in-memory instance: the file is attached read-only, never written
    try:
        con.execute(f"ATTACH '{snap}' AS snap (READ_ONLY)")
        runs = con.execute("SELECT count(*) FROM snap.runs").fetchone()[0]
    except duckdb.Error as err:
        return False, f"the snapshot {snap} is damaged too ({str(err).splitlines()[0]})"
    finally:
        con.close()
    written = time.strftime("%Y-%m-%d %H:%M", time.localtime(snap.stat().st_mtime))
    return True, f"the last published snapshot {snap} (written {written}, {runs} runs)"


def damaged_error(root: Path, err: BaseException) -> RtxError:
    """The database at `root` cannot be read: say so, and give the exact recovery."""
    db = root / paths.DB_NAME
    wal = db.with_name(db.name + ".wal")
    move = f"mv {shlex.quote(str(db))} {shlex.quote(str(db) + '.damaged')}"
    if wal.exists():
        move += f" && mv {shlex.quote(str(wal))} {shlex.quote(str(wal) + '.damaged')}"
    readable, snapshot = snapshot_state(root)
    fresh = f"--cache {shlex.quote(str(root) + '-fresh')}"
    if readable:
        recovery = (f"{snapshot} can replace it: `{move} && cp {shlex.quote(str(paths.snapshot_path(root)))} "
                    f"{shlex.quote(str(db))}`, or start a fresh cache beside it with {fresh}")
    else:
        recovery = f"{snapshot}: move it away to start afresh (`{move}`), or use a fresh cache beside it with {fresh}"
    return RtxError(f"{db} is damaged: DuckDB cannot read it ({str(err).splitlines()[0]}); {recovery}")


def lock_error(root: Path, err: BaseException) -> RtxError:
    """Another process holds the database's lock: name it, and what to do."""
    db = root / paths.DB_NAME
    holder = _HOLDER.search(str(err))
    who = f"process {holder['pid']} ({holder['program']})" if holder else "another process"
    stop = f" (kill {holder['pid']})" if holder else ""
    return RtxError(f"cannot open {db} for writing: {who} holds its lock: another `rtx` command is writing to "
                    f"this cache; wait for it to finish or stop it{stop}")


def open_error(root: Path, err: BaseException) -> RtxError:
    """The one-line diagnosis of a database that did not open for writing."""
    return lock_error(root, err) if is_lock_error(err) else damaged_error(root, err)


def snapshot_error(root: Path, err: BaseException) -> RtxError:
    """A snapshot readers cannot open (after retrying a rename in flight): a damaged copy, republished by any
    command that writes the cache."""
    snap = paths.snapshot_path(root)
    return RtxError(f"the cache snapshot {snap} is damaged: DuckDB cannot read it ({str(err).splitlines()[0]}); any "
                    f"command that writes the cache publishes a fresh one from {paths.DB_NAME}, e.g. "
                    f"`rtx --cache {shlex.quote(str(root))} status --clear-failed`")


__all__ = ["damaged_error", "is_lock_error", "lock_error", "open_error", "snapshot_error", "snapshot_state"]
