"""The benchmark harness: bayou against its own ceilings (and, optionally, its peers).

``python -m bench`` (or ``make bench``, ``bayou bench``) starts everything it measures
itself — a redis-server, silos, echo servers and load generators, each its own process —
runs the scenarios within fixed time bounds, and writes a JSON and a markdown report under
``bench/results/``. See ``bench/README.md``.
"""
