"""`make bench`: ratios measured side by side in one run (see benchmarks/run_all.py)."""
