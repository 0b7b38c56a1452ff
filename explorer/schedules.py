"""Page 7: weight norms under learning-rate schedules, with and without the corrected decay."""

from __future__ import annotations

import streamlit as st

from explorer.computations import SCHEDULE_OPTIMIZERS, SCHEDULES, SPHERE_DIM, schedule_curves
from explorer.display import intuition, show_comparison
from scalewise.figures.schedule_curves import schedule_comparison
from scalewise.vocabulary import Optimizer


def main() -> None:
    st.header("7 · Schedules and the corrected decay")
    intuition("A scale-invariant weight under a learning-rate schedule: theory's continuous "
             "solution and its quasi-static value (theory.norm_under_schedules), the exact "
             "per-step recurrence, and the optimizer itself on "
             f"{SPHERE_DIM}-dimensional directions driven by gradient noise (sphere engine, mean "
             "of 4 runs). The quasi-static value holds where the schedule is slow against the "
             "time constant 1/(2ηλ); as the learning rate decays, ‖∇J‖/‖w‖ rises unless the "
             "decay is corrected to λ·η_t/η_max (Defazio 2025). No stored training run has a "
             "schedule yet, so there is no measured curve here.")
    columns = st.columns(3)
    optimizer = columns[0].selectbox("Optimizer", SCHEDULE_OPTIMIZERS)
    schedule = columns[1].selectbox("Schedule", SCHEDULES, index=SCHEDULES.index("cosine"))
    corrected = columns[2].checkbox("Corrected decay λ·η_t/η_max")
    properties = Optimizer.parse(optimizer).properties
    columns = st.columns(3)
    lr = columns[0].number_input("Peak learning rate η_max", 1e-5, 1.0,
                                 1e-3 if "betas" in properties.hyperparameters else 0.05,
                                 format="%g")
    weight_decay = columns[1].number_input("Weight decay λ", 1e-4, 10.0, 0.1, format="%g")
    steps = columns[2].select_slider("Steps", (2000, 5000, 10_000, 20_000), value=5000)
    momentum = properties.default_momentum if properties.uses_momentum else 0.0
    try:
        data = schedule_curves(optimizer, schedule, lr, weight_decay, steps, corrected, momentum)
    except ValueError as error:
        st.error(f"Impossible input: {error}")
        return
    if properties.uses_momentum or "betas" in properties.hyperparameters:
        st.caption("With momentum the theory curves use the energy that gives this optimizer's "
                   "own equilibrium at η_max (figures.schedule_curves); the sphere's angular "
                   "update differs from theirs by the factor √K of theory.lion_muon_nesterov.")
    show_comparison(schedule_comparison(data), f"schedules_{optimizer}_{schedule}")


if __name__ == "__main__":  # Streamlit runs the page; importing it only defines
    main()
