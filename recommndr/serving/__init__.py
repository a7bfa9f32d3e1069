"""The API: a FastAPI app serving the warm two-stage recommender (and, on Azure, the same app
inside the Functions host)."""
