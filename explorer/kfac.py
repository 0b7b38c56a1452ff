"""Page 5: K-FAC's effective damping on a BN layer and the Gauss-Newton norm against the
Jacobian norm, with the committed ``kfac`` report."""

from __future__ import annotations

import streamlit as st

from explorer.computations import STEP_CHOICES, damping, family_norms, stored_gn_norms
from explorer.display import axes_row, reference_section, show


def main() -> None:
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


def _gauss_newton_section() -> None:
    st.subheader("Gauss–Newton norm vs Jacobian norm (004 Sec. 4.2, Theorem 1)")
    stored = stored_gn_norms()
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


if __name__ == "__main__":  # Streamlit runs the page; importing it only defines
    main()
