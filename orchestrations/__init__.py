"""Durable Functions blueprints registered by ``function_app.py`` beside the ASGI app: the loop's
orchestrators (deterministic: :mod:`recommndr.lifecycle.workflow`), its activities (all the I/O:
:mod:`recommndr.lifecycle.activities`) and what starts them (a timer and a queue, no HTTP route:
:mod:`recommndr.lifecycle.triggers`). Wiring only."""
