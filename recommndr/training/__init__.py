"""The training pipeline behind ``recommndr train``."""
