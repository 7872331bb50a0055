"""Measurement scripts (not tests): run with ``python -m bench.<name>`` from the repo root."""
