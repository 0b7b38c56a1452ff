"""scalewise explorer (Streamlit): theory beside measurement.

UI only: every number shown here is computed in theory/, sim/ or models/, behind the cached
wrappers below. Pages are chosen in the sidebar or by the URL, ``?page=<key>`` (keys of PAGES).
"""

from __future__ import annotations

import functools
import io
from collections.abc import Callable

import numpy as np
import pandas as pd
import streamlit as st
from matplotlib import colormaps
from matplotlib.figure import Figure

from scalewise import models, theory, validation
from scalewise.figures import curves
from scalewise.models.store import RunStore, StoreError, default_store_path
from scalewise.theory import equilibrium as eq
from scalewise.validation import comparison
from scalewise.validation.ics import covariate_shift
from scalewise.validation.kfac import gauss_newton
from scalewise.validation.report import LoadedReport
from scalewise.validation.suite import REFERENCE_DIR
from scalewise.vocabulary import Optimizer

OPTIMIZERS = tuple(o.value for o in Optimizer if o.properties.simulated)
LR_CHOICES = (0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0)
STEP_CHOICES = (1000, 3000, 10_000, 30_000, 100_000)
SMALL_RUN_PRESET = "digits-bn-sgd"
SPHERE_DIM = 64  # the sphere engine's dimension for the optimizers without an exact recurrence


# ------------------------------------------------------------------ cached computations

@st.cache_data(max_entries=64, show_spinner=False)
def check(name: str) -> tuple[bool, bool, float]:
    result = theory.IDENTITIES[name].check()
    return result.holds, result.control_rejected, result.seconds


@st.cache_data(max_entries=32, show_spinner=False)
def norm_growth(lrs: tuple[float, ...], steps: int, grad_norm: float) -> pd.DataFrame:
    return curves.norm_growth_table(lrs, steps=steps, grad_norm=grad_norm)


@st.cache_data(max_entries=32, show_spinner=False)
def wd_trajectory(optimizer: str, lr: float, weight_decay: float, steps: int, momentum: float,
                  betas: tuple[float, float]) -> pd.DataFrame:
    return curves.wd_trajectory_table(optimizer, lr=lr, weight_decay=weight_decay, steps=steps,
                                      momentum=momentum, betas=betas, dim=SPHERE_DIM)


@st.cache_data(max_entries=32, show_spinner=False)
def wd_equilibrium(optimizer: str, lr: float, weight_decay: float, momentum: float,
                   betas: tuple[float, float]) -> dict[str, float] | str:
    return curves.equilibrium_or_reason(optimizer, lr=lr, weight_decay=weight_decay,
                                        momentum=momentum, betas=betas, dim=SPHERE_DIM)


@st.cache_data(max_entries=32, show_spinner=False)
def damping(lr: float, weight_decay: float, eta: float, steps: int) -> pd.DataFrame:
    return curves.effective_damping_table(lr=lr, weight_decay=weight_decay, damping=eta,
                                          steps=steps)


@st.cache_data(max_entries=8, show_spinner=False)
def family_norms(depths: tuple[int, ...], width: int, seed: int) -> pd.DataFrame:
    return gauss_newton.network_family_norms(depths, width=width, seed=seed)


@st.cache_data(max_entries=16, show_spinner=False)
def outliers(max_mean_norm: float, dim: int, samples: int, seed: int) -> pd.DataFrame:
    mean_norms = tuple(np.linspace(0.0, max_mean_norm, 13))
    return covariate_shift.outlier_curves(mean_norms, dim=dim, samples=samples, seed=seed)


@st.cache_data(max_entries=16, show_spinner=False)
def stored_run(path: str, run_id: str, version: str) -> models.Run:
    """The run ``run_id`` of the store at ``path``; ``version`` (its update time and last step)
    keys the cache to what is stored."""
    with RunStore(path) as store:
        return store[run_id]


@st.cache_data(max_entries=16, show_spinner=False)
def run_comparison(path: str, run_id: str, version: str) -> tuple[pd.DataFrame, pd.DataFrame] | str:
    """The comparison table and relative errors of a run, or why it is not compared (a run the
    recurrence does not describe, or an unreadable one)."""
    try:
        run = stored_run(path, run_id, version)
    except ValueError as error:
        return f"Run {run_id} cannot be read from {path} (corrupt record): {error}"
    try:
        table = comparison.compare_run(run)
    except ValueError as error:
        return str(error)
    return table, comparison.relative_errors(table, comparison.invariant_layers(run.metrics))


@st.cache_data(max_entries=8, show_spinner=False)
def reference_report(suite: str, version: float) -> LoadedReport | str:
    """The committed reference report of ``suite``, or why it cannot be read; ``version`` (the
    modification time of its index) keys the cache to what is on disk."""
    try:
        return validation.reference(suite)
    except ValueError as error:
        return str(error)


def _report_version(suite: str) -> float:
    index = REFERENCE_DIR / suite / "index.json"
    return index.stat().st_mtime if index.exists() else 0.0


# ------------------------------------------------------------------ figures and downloads

def axes_row(ncols: int, width: float = 11.0, height: float = 3.6) -> tuple[Figure, list]:
    fig = Figure(figsize=(width, height), layout="constrained")
    axes = list(np.atleast_1d(fig.subplots(1, ncols)))
    for ax in axes:
        ax.grid(True, alpha=0.3)
    return fig, axes


def figure_bytes(fig: Figure, fmt: str) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format=fmt, dpi=120)
    return buffer.getvalue()


def show(fig: Figure, data: pd.DataFrame, name: str) -> None:
    """Draw ``fig`` and offer it as PNG and PDF and its ``data`` as CSV (the PDF is rendered
    only when asked for)."""
    png = figure_bytes(fig, "png")
    st.image(png)
    buttons = st.columns(3)
    buttons[0].download_button(f"{name}.png", png, f"{name}.png", "image/png", key=f"{name}-png")
    buttons[1].download_button(f"{name}.pdf", functools.partial(figure_bytes, fig, "pdf"),
                               f"{name}.pdf", "application/pdf", key=f"{name}-pdf")
    buttons[2].download_button(f"{name}.csv", data.to_csv(index=False), f"{name}.csv",
                               "text/csv", key=f"{name}-csv")


def colors(n: int) -> list:
    return [colormaps["viridis"](v) for v in np.linspace(0.0, 0.85, n)]


# ------------------------------------------------------------------ pages

def norm_growth_page() -> None:
    st.header("1 · Norm growth without weight decay (001 Fig. 6)")
    st.write("SGD on a scale-invariant weight from ‖w₀‖ = 1: the exact recurrence ‖w⁺‖² = ‖w‖² + "
             "α²g²/‖w‖² (001 Eq. 23, λ = 0), dashed the closed-form law ‖w_k‖² = √(1 + k/k₀) "
             "(001 Sec. 4.3). Late in training the effective LR no longer depends on α.")
    lrs = st.multiselect("Learning rates α", LR_CHOICES, default=(0.01, 0.1, 1.0))
    steps = st.select_slider("Steps", STEP_CHOICES, value=30_000)
    grad_norm = st.number_input("g = ‖∇J(ŵ)‖ at unit norm", 0.01, 100.0, 1.0)
    if not lrs:
        st.info("Pick at least one learning rate.")
        return
    data = norm_growth(tuple(sorted(lrs)), steps, grad_norm)
    fig, (left, right) = axes_row(2)
    for (lr, group), color in zip(data.groupby("lr"), colors(len(lrs))):
        k = group["step"].clip(lower=1)
        left.loglog(k, group["norm_sq"], color=color, label=f"α = {lr:g}")
        left.loglog(k, group["law_norm_sq"], color=color, ls="--", lw=0.9)
        right.loglog(k, group["effective_lr"], color=color, label=f"α = {lr:g}")
        right.loglog(k, group["law_effective_lr"], color=color, ls="--", lw=0.9)
    left.set(xlabel="step k", ylabel="‖w_k‖²", title="Norm (dashed: √(1+k/k₀) law)")
    right.set(xlabel="step k", ylabel="α/‖w_k‖²", title="Effective learning rate")
    left.legend()
    show(fig, data, "norm_growth")


def _optimizer_widgets(optimizer: str) -> tuple[float, float, float, tuple[float, float]]:
    adam_family = optimizer in ("adam", "adamw")
    lr = st.number_input("Learning rate α", 1e-6, 10.0, 1e-3 if adam_family else 0.1,
                         format="%g")
    weight_decay = st.number_input("Weight decay λ", 0.0, 10.0, 1e-2,
                                   format="%g")
    momentum = st.slider("Momentum", 0.0, 0.99, 0.9) if optimizer == "sgdm" else 0.0
    betas = (0.9, 0.999)
    if adam_family:
        betas = (st.slider("β₁", 0.0, 0.99, 0.9), st.slider("β₂", 0.9, 0.9999, 0.999,
                                                           format="%.4f"))
    return lr, weight_decay, momentum, betas


def wd_equilibrium_page() -> None:
    st.header("2 · Weight-decay equilibrium (001 Fig. 7)")
    st.write("With weight decay the norm, effective LR and angular update settle at theory's "
             "equilibrium (dotted; 001 Eq. 24-25 for SGD, theory.optimizers for the others). SGD "
             f"iterates the exact recurrence; the others train {SPHERE_DIM}-dimensional unit "
             "directions driven by gradient noise (sphere engine, mean of 4 runs).")
    optimizer = st.selectbox("Optimizer", OPTIMIZERS)
    lr, weight_decay, momentum, betas = _optimizer_widgets(optimizer)
    steps = st.select_slider("Steps", STEP_CHOICES[:3], value=3000)
    if weight_decay <= 0:
        st.info("Set a weight decay λ > 0: without it there is no equilibrium (see page 1).")
        return
    try:
        data = wd_trajectory(optimizer, lr, weight_decay, steps, momentum, betas)
        target = wd_equilibrium(optimizer, lr, weight_decay, momentum, betas)
    except ValueError as error:
        st.error(f"Impossible input: {error}")
        return
    _equilibrium_summary(target)
    fig, axes = axes_row(3)
    for ax, name, label in zip(axes, ("norm_sq", "effective_lr", "angular_update"),
                               ("‖w‖²", "effective LR", "angular update (rad/step)")):
        ax.loglog(data["step"].clip(lower=1), data[name], color="tab:blue", label="simulated")
        if isinstance(target, dict):
            ax.axhline(target[name], color="k", ls=":", label="equilibrium (theory)")
        ax.set(xlabel="step k", ylabel=label)
    axes[0].legend()
    show(fig, data, f"wd_equilibrium_{optimizer}")


def _equilibrium_summary(target: dict[str, float] | str) -> None:
    if isinstance(target, str):
        st.warning(f"No equilibrium, by theory: {target}")
        return
    rate = target["approach_rate"]
    columns = st.columns(4)
    columns[0].metric("‖w‖² at equilibrium", f"{target['norm_sq']:.4g}")
    columns[1].metric("effective LR", f"{target['effective_lr']:.4g}")
    columns[2].metric("angular update", f"{target['angular_update']:.4g} rad")
    columns[3].metric("approach rate per step", f"{rate:.6f}")
    st.caption(f"A deviation from the equilibrium shrinks by the approach rate per step: a time "
               f"constant of {eq.time_constant(rate):.4g} steps. Runs shorter than a few time "
               "constants have not settled yet.")


def _open_store() -> RunStore | None:
    path = default_store_path()
    try:
        return RunStore(path)
    except (StoreError, OSError) as error:
        st.error(f"The run store cannot be read: {error}. Point $SCALEWISE_STORE at another "
                 "file or move this one away.")
        return None


def _start_small_run(store: RunStore) -> None:
    steps = st.number_input("Steps of a small run", 20, 1000, 200, step=20)
    if not st.button(f"Start a small run ({SMALL_RUN_PRESET} on CPU)"):
        return
    config = models.override(models.preset(SMALL_RUN_PRESET), {"steps": int(steps),
                                                                "device": "cpu"})
    bar = st.progress(0.0, text="training")
    run = models.train(config, store=store, progress=False,
                       on_step=lambda k, _: bar.progress((k + 1) / config.steps,
                                                         text=f"step {k + 1}/{config.steps}"))
    st.success(f"Run {run.id} finished: {run.status.value}.")


def measurement_page() -> None:
    st.header("3 · Theory vs measurement")
    st.write("Measured per-layer ‖w‖², effective LR and angular update of stored runs, beside "
             "the recurrence 001 Eq. (23) driven by the run's own measured gradient norms at "
             "unit weight norm and the equilibrium prediction (001 Eq. 24-25).")
    reference_section("effective-lr")
    st.subheader("Your runs")
    store = _open_store()
    if store is None:
        return
    with store:
        st.caption(f"Run store: `{store.path}`")
        _start_small_run(store)
        runs = store.runs()
    if runs.empty:
        st.info("There are no runs in the store yet: start a small run above, or train one with "
                "`scalewise train --preset digits-bn-sgd`.")
        return
    labels = {row.id: f"{row.id} · {row.name} · {row.status} · {row.last_step} steps"
              for row in runs.itertuples()}
    chosen = st.multiselect("Runs", list(labels), default=list(labels)[:1],
                            format_func=labels.get)
    versions = {row.id: version(row) for row in runs.itertuples()}
    for run_id in chosen:
        _compare(str(store.path), run_id, versions[run_id])


def version(row) -> str:
    """What identifies the stored state of a run (a row of ``RunStore.runs()``)."""
    return f"{row.updated}/{row.last_step}"


def _compare(path: str, run_id: str, run_version: str) -> None:
    st.subheader(f"Run {run_id}")
    result = run_comparison(path, run_id, run_version)
    if isinstance(result, str):
        st.info(result)
        return
    table, errors = result
    layer = st.selectbox("Layer", sorted(table["layer"].unique()), key=f"layer-{run_id}")
    rows = table[table["layer"] == layer]
    fig, axes = axes_row(3)
    styles = {"measured": "-", "driven": "--", "equilibrium": ":"}
    for ax, (quantity, group) in zip(axes, rows.groupby("quantity", sort=False)):
        for source, style in styles.items():
            series = group[group["source"] == source]
            if not series.empty:
                ax.semilogy(series["step"], series["value"], ls=style, label=source)
        ax.set(xlabel="step k", title=quantity)
    axes[0].legend()
    show(fig, rows, f"comparison_{run_id}_{layer}")
    st.write("Relative errors |prediction − measured| / |measured|")
    st.caption("driven: median over steps and at the last step; equilibrium: against the "
               "measured mean of the last quarter of the run, which is only meaningful once the "
               "run has lasted several time constants (page 2 shows the approach rate). A layer "
               "that is not scale invariant breaks the premise of 001 Eq. (23).")
    st.dataframe(errors, hide_index=True, width="stretch")


def reference_section(suite: str) -> None:
    """The committed reference report of ``suite``: its agreement table, each section with its
    figures, and the records and curves to browse and download."""
    report = reference_report(suite, _report_version(suite))
    if isinstance(report, str):
        st.info(f"No reference report of `{suite}` here ({report}). Make it with "
                f"`scalewise validate {suite} --out validation/reference/{suite}`.")
        return
    st.subheader(report.index["title"])
    st.markdown(report.index["intro"])
    agreement = pd.DataFrame(report.index["agreement"])
    if not agreement.empty:
        st.write("Agreement: the statistic of |predicted − measured| / |measured| against the "
                 "limit the suite promises.")
        st.dataframe(agreement[["experiment", "optimizer", "quantity", "statistic", "per_layer",
                                "value", "limit", "count", "holds", "description"]],
                     hide_index=True, width="stretch")
    sections = report.index["sections"]
    for tab, section in zip(st.tabs([s["title"] for s in sections]), sections):
        with tab:
            st.markdown(section["text"])
            for figure in section["figures"]:
                st.image(str(report.folder / figure["file"]), caption=figure["caption"])
    _browse_curves(report, suite)
    with st.expander(f"All {len(report.records)} records (report.json)"):
        st.dataframe(report.records, hide_index=True, width="stretch")
        st.download_button("report.json", report.records.to_json(orient="records"),
                           f"{suite}_report.json", "application/json", key=f"{suite}-json")


def _browse_curves(report: LoadedReport, suite: str) -> None:
    """Redraw any measured curve of the report beside its predictions."""
    data = report.curves
    if data.empty:
        return
    st.write("Curves: choose one to redraw, every source (measured, predicted) on one axis.")
    columns = st.columns(4)
    for column, key in zip(columns, ("experiment", "quantity", "optimizer", "layer")):
        data = data[data[key] == column.selectbox(key, sorted(data[key].unique()),
                                                  key=f"{suite}-{key}")]
    fig, (ax,) = axes_row(1, width=7.0)
    for source, group in data.groupby("source"):
        ax.plot(group["step"], group["value"], "--" if source != "measured" else "-",
                label=source)
    positive = (data["value"] > 0).all()
    ax.set(xlabel="step k", yscale="log" if positive else "linear")
    ax.legend()
    show(fig, data, f"{suite}_curve")


def identities_page() -> None:
    st.header("4 · Identities")
    st.write(
        "Every identity of the seeds, proved exactly in SymPy. Each has a negative control: a "
        "deliberately wrong variant the same check must reject."
    )
    topics = sorted({item.topic for item in theory.IDENTITIES.values()})
    topic = st.selectbox("Topic", ["all", *topics])
    for name, item in theory.IDENTITIES.items():
        if topic not in ("all", item.topic):
            continue
        with st.expander(f"{name} — {item.source}"):
            st.latex(item.statement)
            if item.note:
                st.caption(item.note)
            if st.button("Check now", key=f"check-{name}"):
                holds, rejected, seconds = check(name)
                st.write(f"holds: **{holds}**, control rejected: **{rejected}** ({seconds:.3f} s)")
    st.subheader("Slips in the seeds")
    slips = pd.DataFrame([vars(s) for s in theory.SLIPS])
    st.dataframe(slips, hide_index=True, width="stretch")


def kfac_page() -> None:
    st.header("5 · K-FAC")
    st.subheader("Effective damping η‖w‖² (001 Sec. 5.2, 004 Eq. 14)")
    columns = st.columns(4)
    lr = columns[0].number_input("α", 1e-4, 10.0, 0.1, format="%g")
    weight_decay = columns[1].number_input("λ", 1e-6, 10.0, 1e-3, format="%g")
    eta = columns[2].number_input("damping η", 1e-6, 10.0, 1e-3, format="%g")
    steps = columns[3].select_slider("Steps", STEP_CHOICES, value=10_000)
    try:
        data = damping(lr, weight_decay, eta, steps)
    except ValueError as error:
        st.error(f"Impossible input: {error}")
    else:
        fig, (ax,) = axes_row(1, width=7.0)
        for wd, group in data.groupby("weight_decay"):
            ax.loglog(group["step"].clip(lower=1), group["effective_damping"],
                      label="no weight decay" if wd == 0 else f"λ = {wd:g}")
        ax.set(xlabel="step k", ylabel="η‖w_k‖²", title="Effective damping of a BN layer")
        ax.legend()
        show(fig, data, "effective_damping")
    _gauss_newton_section()
    reference_section("kfac")


def _stored_gn_norms() -> pd.DataFrame:
    """Gauss-Newton norms from the stored runs' costly probes (empty if none measured them)."""
    path = default_store_path()
    if not path.exists():
        return pd.DataFrame()
    try:
        with RunStore(path) as store:
            runs = store.runs()
        frames = [gauss_newton.stored_norms(stored_run(str(path), r.id, version(r)).metrics)
                  .assign(run=r.id) for r in runs.itertuples()]
    except (ValueError, OSError):  # an unreadable store or run: fall back to the live family
        return pd.DataFrame()
    found = [f for f in frames if "gn_norm" in f.columns]
    return pd.concat(found, ignore_index=True) if found else pd.DataFrame()


def _gauss_newton_section() -> None:
    st.subheader("Gauss–Newton norm vs Jacobian norm (004 Sec. 4.2, Theorem 1)")
    stored = _stored_gn_norms()
    if not stored.empty:
        st.write("From the stored runs' costly probes:")
        st.dataframe(stored, hide_index=True, width="stretch")
    else:
        st.info("No stored run has Gauss–Newton probes (they need a network of Linear layers and "
                "elementwise activations); computed live on a family of bias-free networks with "
                "whitened inputs instead.")
    width = st.slider("Width", 2, 8, 4)
    data = family_norms((0, 1, 2, 3), width, 0)
    fig, axes = axes_row(2)
    for ax, ratio, theory_ratio, title in (
            (axes[0], "gn_ratio", "theory_gn_ratio", "θᵀGθ / ‖J‖²_F"),
            (axes[1], "kfac_ratio", "theory_kfac_ratio", "θᵀĜθ / ‖J‖²_F (K-FAC)")):
        for activation, group in data.groupby("activation"):
            ax.plot(group["L"], group[ratio], "o-", label=f"measured, {activation}")
        ax.plot(data["L"].unique(), data[theory_ratio].unique(), "k:", label="theory (linear)")
        ax.set(xlabel="L (L+1 weight matrices)", title=title)
    axes[0].legend()
    show(fig, data, "gauss_newton_norms")


def covariate_shift_page() -> None:
    st.header("6 · Internal covariate shift")
    st.write("Activations with mean m and covariance I give K-FAC's factor A = E[aaᵀ] = I + mmᵀ "
             "an outlier eigenvalue 1 + ‖m‖²; with the bias coordinate, the larger root of "
             "ν² − (2 + ‖m‖²)ν + 1 (001 Sec. 3, Eq. 5; theory.kronecker). Measured: the top "
             "eigenvalue of A estimated from sampled activations.")
    columns = st.columns(3)
    max_mean = columns[0].slider("largest ‖m‖", 0.5, 10.0, 4.0)
    dim = columns[1].select_slider("units", (8, 16, 32, 64), value=32)
    samples = columns[2].select_slider("samples", (512, 1024, 4096, 16384), value=4096)
    data = outliers(max_mean, dim, samples, 0)
    fig, (ax,) = axes_row(1, width=7.0)
    ax.semilogy(data["mean_norm"], data["theory"], "k-", label="theory 1 + ‖m‖²")
    ax.semilogy(data["mean_norm"], data["theory_homogeneous"], "k--",
                label="theory, with bias coordinate")
    ax.semilogy(data["mean_norm"], data["measured"], "o", color="tab:blue", label="measured")
    ax.semilogy(data["mean_norm"], data["measured_homogeneous"], "s", color="tab:orange",
                mfc="none", label="measured, with bias coordinate")
    ax.set(xlabel="‖m‖ (mean of the activations)", ylabel="largest eigenvalue of A")
    ax.legend()
    show(fig, data, "covariate_shift_outlier")
    reference_section("ics")


PAGES: dict[str, tuple[str, Callable[[], None]]] = {
    "norm-growth": ("1 Norm growth", norm_growth_page),
    "wd-equilibrium": ("2 Weight-decay equilibrium", wd_equilibrium_page),
    "measurement": ("3 Theory vs measurement", measurement_page),
    "identities": ("4 Identities", identities_page),
    "kfac": ("5 K-FAC", kfac_page),
    "covariate-shift": ("6 Internal covariate shift", covariate_shift_page),
}


def main() -> None:
    st.set_page_config(page_title="scalewise", layout="wide")
    st.title("scalewise")
    st.caption("Normalization, weight decay, adaptive methods and K-FAC: proved, simulated, "
               "measured.")
    keys = list(PAGES)
    asked = st.query_params.get("page", keys[0])
    page = st.sidebar.radio("Page", keys, index=keys.index(asked) if asked in keys else 0,
                            format_func=lambda key: PAGES[key][0])
    st.query_params["page"] = page
    PAGES[page][1]()


if __name__ == "__main__":  # `streamlit run` and AppTest; importing app.py only defines
    main()
