"""Offline evaluation: ranking metrics and the held-out comparison of the models."""
