"""scalewise explorer (Streamlit): theory beside measurement.

The entry point of ``streamlit run app.py``: it puts the seven pages of ``explorer/`` (one script
each, UI only; every number is computed in theory/, sim/, figures/, models/ or validation/ behind
the cached wrappers of ``explorer/computations.py``) into Streamlit's navigation. Each page has
its own URL path, ``/<key>`` (keys of :data:`PAGES`; the first page is also the root URL), and
``?page=<key>`` opens the same page and moves to that path.
"""

from __future__ import annotations

import streamlit as st

PAGES: dict[str, tuple[str, str]] = {  # URL key -> (title in the navigation, page script)
    "norm-growth": ("1 Norm growth", "explorer/norm_growth.py"),
    "wd-equilibrium": ("2 Weight-decay equilibrium", "explorer/wd_equilibrium.py"),
    "measurement": ("3 Theory vs measurement", "explorer/measurement.py"),
    "identities": ("4 Identities", "explorer/identities.py"),
    "kfac": ("5 K-FAC", "explorer/kfac.py"),
    "covariate-shift": ("6 Internal covariate shift", "explorer/covariate_shift.py"),
    "schedules": ("7 Schedules", "explorer/schedules.py"),
}


def main() -> None:
    st.set_page_config(page_title="scalewise", layout="wide")
    pages = {key: st.Page(script, title=title, url_path=key)
             for key, (title, script) in PAGES.items()}
    page = st.navigation(list(pages.values()))
    asked = st.query_params.get("page")
    if asked in pages:  # links of the form ?page=<key>: rerun on that page, at its own path
        st.switch_page(pages[asked])
    st.title("scalewise")
    st.caption("Normalization, weight decay, adaptive methods and K-FAC: proved, simulated, "
               "measured.")
    page.run()


if __name__ == "__main__":  # `streamlit run` and AppTest; importing app.py only defines
    main()
