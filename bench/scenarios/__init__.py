"""One module per scenario; each ``run(bench)`` returns its part of the report."""
