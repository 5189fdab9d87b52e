"""Analytical models of what the methods cost, to check measurements against."""
