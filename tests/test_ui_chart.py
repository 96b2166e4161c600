"""`ui.chart` sends what `st.altair_chart` sends, rebuilds when its data changes, and `ui.footer` writes its CSV
only when asked (the two server-side savings behind the explorer's load figures)."""

from __future__ import annotations

from streamlit.dataframe_util import convert_arrow_bytes_to_pandas_df
from streamlit.testing.v1 import AppTest


def _both_ways() -> None:
    """A page drawing one chart through `st.altair_chart` and then through `ui.chart`, for two data sizes."""
    import pandas as pd
    import streamlit as st

    from app import charts, ui

    n = st.session_state.get("n", 3)
    rows = pd.DataFrame({"target": "fmnist", "source": ["natural", "l2_3"] * n, "n_train": range(2 * n),
                         "blocks": 3, "mean": 0.5, "lo": 0.4, "hi": 0.6, "n_seeds": 3})
    st.altair_chart(charts.accuracy_vs_size(rows))
    ui.chart(charts.accuracy_vs_size, rows)


def _chart_parts(at: AppTest) -> list[tuple[str, list[tuple[str, list]]]]:
    return [(chart.proto.spec, [(d.name, convert_arrow_bytes_to_pandas_df(d.data.data).values.tolist())
                                for d in chart.proto.datasets]) for chart in at.get("vega_lite_chart")]


def test_cached_chart_sends_what_altair_chart_sends() -> None:
    at = AppTest.from_function(_both_ways, default_timeout=60).run()
    assert not at.exception, [e.value for e in at.exception]
    direct, cached = _chart_parts(at)
    assert cached == direct and len(direct[1][0][1]) == 6  # spec text and every dataset row


def test_cached_chart_follows_its_data() -> None:
    at = AppTest.from_function(_both_ways, default_timeout=60).run()
    at.session_state["n"] = 5
    at.run()
    direct, cached = _chart_parts(at)
    assert cached == direct and len(cached[1][0][1]) == 10  # the new rows, not the spec cached for 3


def test_footer_writes_the_csv_only_when_downloaded(monkeypatch) -> None:
    import pandas as pd

    from app import ui

    calls: list[dict] = []
    monkeypatch.setattr(ui.st, "caption", lambda text: None)
    monkeypatch.setattr(ui.st, "download_button", lambda label, data, **kw: calls.append({"data": data, **kw}))
    written: list[int] = []
    rows = pd.DataFrame({"a": [1, 2]})
    monkeypatch.setattr(pd.DataFrame, "to_csv", lambda self, **kw: written.append(1) or "a\n1\n2\n")
    ui.footer("caption", rows, "rows")
    assert calls and not written, "the CSV was written for a rerun nobody downloaded"
    assert calls[0]["data"]() == b"a\n1\n2\n" and written == [1] and calls[0]["file_name"] == "rows.csv"
