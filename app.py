"""scalewise explorer (Streamlit): theory beside measurement.

The entry point of ``scalewise explore`` (which loads the pages' libraries, then runs Streamlit
on this file) and of ``streamlit run app.py``: it puts the seven pages of ``explorer/`` (one script
each, UI only; every number is computed in theory/, sim/, figures/, models/ or validation/ behind
the cached wrappers of ``explorer/computations.py``) into Streamlit's navigation, with a sidebar
that says how to read the charts and what the seeds cited everywhere are. Each page has its own
URL path, ``/<key>`` (keys of :data:`PAGES`; the first page is also the root URL), and
``?page=<key>`` opens the same page and moves to that path. ``.streamlit/config.toml`` gives the
viewer's toolbar.
"""

from __future__ import annotations

import streamlit as st

from scalewise.theory.catalogue import SEEDS

PAGES: dict[str, tuple[str, str]] = {  # URL key -> (title in the navigation, page script)
    "norm-growth": ("1 Norm growth", "explorer/norm_growth.py"),
    "wd-equilibrium": ("2 Weight-decay equilibrium", "explorer/wd_equilibrium.py"),
    "measurement": ("3 Theory vs measurement", "explorer/measurement.py"),
    "identities": ("4 Identities", "explorer/identities.py"),
    "kfac": ("5 K-FAC", "explorer/kfac.py"),
    "covariate-shift": ("6 Internal covariate shift", "explorer/covariate_shift.py"),
    "schedules": ("7 Schedules", "explorer/schedules.py"),
}

SEED_TOPICS = {  # what each seed covers, beside its title from theory.catalogue.SEEDS
    "000": "adaptive methods, normalization, weight decay; AdaGraft and norm grafting",
    "001": "the main reference: adaptive methods, internal covariate shift, batch norm, the "
           "effective learning rate, weight decay's three mechanisms; Eqs. (1)-(27)",
    "002": "the 2021 edition of the 000 slides",
    "003": "Newton, damping, preconditioning as reparameterization, K-FAC",
    "004": "the paper (Zhang et al.): effective LR (I), Jacobian norm (II), effective damping "
           "(III) measured on VGG and ResNet",
}

READING = ("**Reading a chart.** The thick translucent line is theory; thin lines are the "
           "simulation or the measurement; a band is their spread over units, seeds or curves. "
           "Under each chart: data / theory, 1 where theory holds. Hover for values, scroll to "
           "zoom the steps, drag to pan, double-click to reset, click a legend entry to show it "
           "alone.")


def main() -> None:
    st.set_page_config(page_title="scalewise", layout="wide")
    pages = {key: st.Page(script, title=title, url_path=key)
             for key, (title, script) in PAGES.items()}
    page = st.navigation(list(pages.values()))
    asked = st.query_params.get("page")
    if asked in pages:  # links of the form ?page=<key>: rerun on that page, at its own path
        st.switch_page(pages[asked])
    _sidebar()
    page.run()


def _sidebar() -> None:
    with st.sidebar:
        st.caption("scalewise: normalization, weight decay, adaptive methods and K-FAC — "
                   "proved, simulated, measured.")
        st.markdown(READING)
        with st.expander("The seeds: what “001 Eq. (23)” cites", expanded=False):
            for key, title in SEEDS.items():
                st.markdown(f"**{key}** — {title.split(' (')[0]}: {SEED_TOPICS[key]}.")


if __name__ == "__main__":  # `streamlit run` and AppTest; importing app.py only defines
    main()
