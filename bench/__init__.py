"""Benchmarks: `python -m bench` measures ingest time and store bytes against baselines."""
