"""scalewise.figures: the notes' figures from the simulators.

:mod:`~scalewise.figures.curves` builds their data as long-form tables (001 Fig. 6 and 7, any
optimizer's equilibrium, K-FAC's effective damping) for the explorer and CSV exports;
:mod:`~scalewise.figures.notes` draws them with matplotlib for papers (``scalewise figures``).
Neither is imported by ``scalewise.sim``.
"""
