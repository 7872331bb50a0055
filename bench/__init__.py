"""Measurement scripts (not tests): ``make bench`` runs ``python -m bench`` (baseline vs product,
all sections); single scripts run with ``python -m bench.<name>`` from the repo root."""
