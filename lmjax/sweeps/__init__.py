"""Scaling sweeps: planning runs, the sweep directory, and collecting finished runs."""
