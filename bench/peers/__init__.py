"""``make bench-peers``: bayou's ``call`` workload side by side with Ray and Restate.

Run as ``python -m bench.peers`` from bayou's virtualenv (``run.py`` does the work). The
peers install into virtualenvs of their own under ``~/.cache/bayou-bench-peers``
(``install.py``); the code that imports a peer's packages (``ray_driver.py``,
``restate_app.py``) runs only under that peer's interpreter, so nothing here may import
bayou's dependencies at module level: this package is imported by those interpreters too.
"""
