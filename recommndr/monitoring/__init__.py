"""Monitoring: the reference a bundle records at training time (``reference``, ``profile``), what
the API keeps of its traffic (``window``), the drift check and its calibration (``drift``,
``stats``), the watcher that runs it on a timer (``watch``), and the Grafana dashboards as code
with their renderer (``dashboards``, ``render``)."""
