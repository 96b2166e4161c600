"""The Gradio demo: upload, draw or pick an image; see which training images the paper's robust analogue, the
best-transferring budget and the natural model lean on for their prediction (the paper's Section 6, on demand).

One job per module: `results` (answer types and their JSON), `backend` (cache reads at start-up, influence
queries per request), `files` (result images written once, never rewritten), `handlers` (request ->
`DemoOutputs`), `layout` (the Blocks), `launch` and `__main__` (serving; `python -m app.demo`). Which models
are compared comes from `app.pairing` (`Comparison`: one influence cell's models), shared with the explorer.
"""

import os

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # offline: no telemetry, no version check

from app.demo.backend import DEFAULT_K, MAX_K, DemoBackend  # noqa: E402  (after the environment above)
from app.demo.files import ResultFiles  # noqa: E402
from app.demo.handlers import OUTPUT_NAMES, DemoOutputs, neighbours, sketch_neighbours  # noqa: E402
from app.demo.launch import launch  # noqa: E402
from app.demo.layout import API_HELP, build_demo  # noqa: E402
from app.demo.results import Explanation  # noqa: E402
from app.pairing import Comparison, Side  # noqa: E402
from app.uploads import FORMATS  # noqa: E402

__all__ = ["API_HELP", "DEFAULT_K", "FORMATS", "MAX_K", "OUTPUT_NAMES", "Comparison", "DemoBackend", "DemoOutputs",
           "Explanation", "ResultFiles", "Side", "build_demo", "launch", "neighbours", "sketch_neighbours"]
