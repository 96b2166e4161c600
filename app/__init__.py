"""User interfaces over the cache: `explorer.py` (Streamlit, read-only pages) and the Gradio demo.

The explorer's modules: `data` (the only one that touches `CacheReader`), `charts` (pure DataFrame -> Altair),
`paper` (the paper's Table 7 and how the cache's sources map onto it), `ui` (shared page widgets), `views/` (the pages; not `pages/`, which Streamlit would also read as a v1 page folder).
"""
