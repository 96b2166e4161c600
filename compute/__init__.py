"""Robust Transfer Explorer compute layer: plan, run and record transfer experiments.

Nothing here imports Streamlit or Gradio; `app/` reads what this package writes.
"""

import os

# Idle OpenMP threads sleep instead of spinning. On a laptop whose cores are busy with something else (a browser,
# the explorer, a second job), spinning threads starve each other: a 2-thread small-ResNet training step measured
# 72 img/s with the default policy vs 535 img/s with PASSIVE on a loaded 2-core machine. Must be set before
# torch starts its thread pool, hence here, at the top of the package.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__version__ = "0.1.0"
