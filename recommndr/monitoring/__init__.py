"""Monitoring: the Grafana dashboards (as code) and what reads them back (queries, the renderer)."""
