"""The explorer starts and renders without exceptions (Streamlit's AppTest, no browser)."""

from __future__ import annotations

from pathlib import Path

from streamlit.testing.v1 import AppTest

import theory

APP = str(Path(__file__).resolve().parents[1] / "app.py")


def test_app_renders_the_identities() -> None:
    app = AppTest.from_file(APP, default_timeout=60).run()
    assert not app.exception
    assert len(app.expander) == len(theory.IDENTITIES)
    assert len(app.dataframe) == 1


def test_topic_filter_changes_the_page() -> None:
    app = AppTest.from_file(APP, default_timeout=60).run()
    app.selectbox[0].select("equilibrium").run()
    shown = len(app.expander)
    expected = sum(item.topic == "equilibrium" for item in theory.IDENTITIES.values())
    assert not app.exception and shown == expected
