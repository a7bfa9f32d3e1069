"""Data: the schema, the synthetic generator, real-data import, validation, profiling and splits."""
