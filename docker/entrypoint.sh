#!/bin/sh
# First start: fill the mounted cache volume with the demo precompute, then run the command (default `rtx serve`).
# Later starts find the finished cache and go straight on (precompute resumes and skips what is done).
# RTX_PRESET picks another preset; RTX_SKIP_PRECOMPUTE=1 serves whatever the cache holds.
set -eu
if [ "${RTX_SKIP_PRECOMPUTE:-0}" != "1" ]; then
    echo "entrypoint: rtx precompute --preset ${RTX_PRESET:-demo} into ${RTX_CACHE:-the default cache}" >&2
    rtx precompute --preset "${RTX_PRESET:-demo}" --no-progress
fi
exec "$@"
