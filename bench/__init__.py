"""taskstore's benchmark harness: ``python -m bench [--quick]`` (see bench/harness.py)."""
