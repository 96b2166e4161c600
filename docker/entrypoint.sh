#!/bin/sh
# Before `rtx serve` (the default command): fill the mounted cache volume with the demo precompute, then serve.
# Later starts find the finished cache and go straight on (precompute resumes and skips what is done).
# Every other command (`rtx --help`, `rtx status`, `rtx finetune ...`, a shell) runs at once, with no precompute.
# RTX_PRESET picks another preset; RTX_SKIP_PRECOMPUTE=1 serves whatever the cache holds.
set -eu
if [ "${1:-}" = "rtx" ] && [ "${2:-}" = "serve" ] && [ "${RTX_SKIP_PRECOMPUTE:-0}" != "1" ]; then
    echo "entrypoint: rtx precompute --preset ${RTX_PRESET:-demo} into ${RTX_CACHE:-the default cache}" >&2
    rtx precompute --preset "${RTX_PRESET:-demo}" --no-progress
fi
exec "$@"
