"""One router per group of routes; ``serving/app.py`` includes them all."""
