"""Streaming: live traffic against a running API. ``simulate``: shoppers from the synthetic shop's
ground truth who ask ``/recommendations``, then view, cart and buy by the offline A/B test's click
model and post those events, at a stated rate (the canary's and the streaming job's load)."""
