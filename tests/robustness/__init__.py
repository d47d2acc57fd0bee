"""Robustness suites: bad input on every surface, fuzzing, injected faults, safe serving, soak."""
