"""Recommndr: e-commerce recommendations with the whole MLOps loop around them."""

__version__ = "0.1.0"
