"""scalewise: training dynamics under normalization, weight decay, adaptive methods and K-FAC,
proved (SymPy), simulated (NumPy) and measured (PyTorch).

The subpackages are imported on demand, so ``import scalewise`` stays cheap::

    from scalewise import theory, sim, models, validation

``theory`` (exact identities and closed forms) <- ``sim`` (simulators) <- ``models`` (networks,
training, probes) <- ``validation`` (theory against measurement) <- the ``scalewise`` command
(:mod:`scalewise.cli`) and the explorer (``app.py``).
"""

from __future__ import annotations

import importlib.metadata

try:
    __version__ = importlib.metadata.version("scalewise")
except importlib.metadata.PackageNotFoundError:  # a source tree that was never installed
    __version__ = "0+unknown"
