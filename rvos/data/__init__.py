"""Data: the synthetic generator and the official dataset layouts."""
