"""Hyperparameter sweeps on Ray Tune: every trial is a full training run (see sweep.py)."""
