"""Azure Functions blueprints registered by ``function_app.py`` beside the ASGI app; each is
wiring only: the work is in the ``recommndr`` package."""
