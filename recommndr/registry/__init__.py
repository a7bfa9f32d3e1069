"""Model artifacts (one loader for every consumer) and MLflow tracking and registry."""
