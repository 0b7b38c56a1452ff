"""The explorer's pages (``app.py`` is the entry point that puts them in Streamlit's navigation).

One script per page (:mod:`norm_growth`, :mod:`wd_equilibrium`, :mod:`measurement`,
:mod:`identities`, :mod:`kfac`, :mod:`covariate_shift`), each UI only: widgets, then the cached
calls of :mod:`explorer.computations`, then figures drawn with :mod:`explorer.display`. Streamlit
runs a page script as ``__main__``; importing one only defines it. This folder is not installed:
it is imported from the repository, whose root Streamlit puts on ``sys.path`` while it runs
``app.py``.
"""
