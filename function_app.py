"""The Azure Functions app: the same FastAPI app as `recommndr serve`, hosted by
``AsgiFunctionApp`` with the same paths (``host.json`` sets an empty route prefix). Only wiring
lives here; everything else is in the ``recommndr`` package. Models load in the ASGI lifespan
(at the host's first start), not at import."""

import azure.functions as func

from recommndr.serving.app import create_app

app = func.AsgiFunctionApp(app=create_app(), http_auth_level=func.AuthLevel.ANONYMOUS)
