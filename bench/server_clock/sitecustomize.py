"""The explorer server's own clock for `bench/explorer.py --sessions` (never loaded by the product).

bench/explorer.py puts this folder on the PYTHONPATH of the `rtx explore` it starts and names a log file in
RTX_BENCH_SERVER_LOG; Python imports `sitecustomize` at start-up, and this one wraps two methods of Streamlit's
AppSession to append one JSON line per page request (a `rerun_script` message from a browser, fragment reruns
left out) and per finished full run (`script_finished`, FINISHED_SUCCESSFULLY), with CLOCK_MONOTONIC times.
Why: seen from the browsers, the server's answer arrives only after Chromium and Playwright have relayed it,
which takes seconds when ten of them share two cores; this is the server's answer time itself.
"""

from __future__ import annotations

import json
import os
import threading
import time

_LOG = os.environ.get("RTX_BENCH_SERVER_LOG")


def _install(log: str) -> None:
    from streamlit.proto.ForwardMsg_pb2 import ForwardMsg
    from streamlit.runtime.app_session import AppSession

    lock = threading.Lock()

    def write(record: dict) -> None:
        with lock, open(log, "a") as out:
            out.write(json.dumps(record) + "\n")

    handle_backmsg, enqueue = AppSession.handle_backmsg, AppSession._enqueue_forward_msg

    def logged_backmsg(self: AppSession, msg) -> None:
        if msg.WhichOneof("type") == "rerun_script" and not msg.rerun_script.fragment_id:
            write({"session": self.id, "event": "request", "t": time.monotonic(), "page": msg.rerun_script.page_name})
        handle_backmsg(self, msg)

    def logged_enqueue(self: AppSession, msg: ForwardMsg) -> None:
        if msg.WhichOneof("type") == "script_finished" \
                and msg.script_finished == ForwardMsg.ScriptFinishedStatus.FINISHED_SUCCESSFULLY:
            write({"session": self.id, "event": "finished", "t": time.monotonic()})
        enqueue(self, msg)

    AppSession.handle_backmsg, AppSession._enqueue_forward_msg = logged_backmsg, logged_enqueue


if _LOG:
    _install(_LOG)
