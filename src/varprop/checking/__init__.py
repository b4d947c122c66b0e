"""Checking predictions against Monte Carlo: verdicts, calibrated statistics, sweeps and
initializer checks."""
