"""Charts and self-contained HTML reports of runs, ensembles and comparisons (a top layer: it reads results
and metrics, and nothing below imports it)."""
