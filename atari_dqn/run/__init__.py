"""The one run lifecycle that every mode uses (lifecycle.py)."""
