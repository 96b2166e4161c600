"""The parts a model plays in the influence comparison (issue 14), recorded as `role` in a source's meta (the
paper analogue, from the preset) and in an influence result's meta (by the influence stage):

- natural: the naturally trained baseline,
- paper analogue: the robust source the preset names as the paper's model at the same per-value strength,
- best budget: the robust source with the highest mean robust-minus-natural accuracy on the influence target
  (compute.stages.best_budget), with the reason it was chosen (`role_note`).

A result can play two parts ('paper analogue, best budget'). Torch-free: the app imports it.
"""

from __future__ import annotations

NATURAL_ROLE = "natural"
ANALOGUE_ROLE = "paper analogue"
BEST_ROLE = "best budget"

__all__ = ["ANALOGUE_ROLE", "BEST_ROLE", "NATURAL_ROLE"]
