"""Robust Transfer Explorer compute layer: plan, run and record transfer experiments.

Nothing here imports Streamlit or Gradio; `app/` reads what this package writes.
"""

__version__ = "0.1.0"
