"""The Azure Functions app: the same FastAPI app as `recommndr serve`, hosted by
``AsgiFunctionApp`` with the same paths (``host.json`` sets an empty route prefix), the timer
Functions of ``functions/`` (the drift check) and the loop's Durable Functions of
``orchestrations/`` (its orchestrators, activities, and a timer and a queue that start them)
beside it. ``AsgiFunctionApp`` registers a catch-all HTTP route; the blueprints here add no HTTP
route, so every path still reaches the API. Only wiring lives here; everything else is in the
``recommndr`` package. Models load in the ASGI lifespan (at the host's first start), not at import."""

import azure.functions as func

from functions import drift
from orchestrations import loop
from recommndr.serving.app import create_app

api = create_app()
app = func.AsgiFunctionApp(app=api, http_auth_level=func.AuthLevel.ANONYMOUS)
app.register_functions(drift.blueprint(api.state.recommndr))
app.register_functions(loop.blueprint())
