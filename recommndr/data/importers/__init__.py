"""Importers that map real data into the dataset schema."""
