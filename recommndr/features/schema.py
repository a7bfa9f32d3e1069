"""The online feature view, defined once: Feast's definitions (``definitions.py``), the request
path's reader/writer (``online.py``) and the streaming job all take the names from here.

``user_realtime`` holds what a shopper did since the served model's training cut-off, keyed by
``user_id``: the products they interacted with (newest first), the products they bought (so
durables are not recommended again), when they were last active, how many events they sent, and
the products they added to a cart (newest first; ``exclude=carted``). A field added later is
appended: a record stored before it existed has no value for it and reads as empty.
"""

from __future__ import annotations

from typing import Literal

PROJECT = "recommndr"
ENTITY = "user"
JOIN_KEY = "user_id"
VIEW = "user_realtime"
PUSH_SOURCE = "user_realtime_push"
RECENT_MAX = 20  # products kept per list, newest first
TTL_DAYS = 30

Kind = Literal["int64", "int64_list"]
FIELDS: dict[str, Kind] = {
    "recent_items": "int64_list",
    "purchased_items": "int64_list",
    "last_event_us": "int64",
    "events": "int64",
    "carted_items": "int64_list",
}

# --- the streaming job's product windows ---------------------------------------------------------
# ``product_realtime``, keyed by ``item_id``: each product's views, add-to-carts and purchases over the
# last hour and day of event time, and its trending score, as of ``window_end_us`` (the end of the
# newest one-minute tile the job had seen when it wrote them). The Flink job writes it
# (``recommndr.streaming.windows``); the API reads it for /trending and the popularity candidates.
PRODUCT_ENTITY = "product"
PRODUCT_JOIN_KEY = "item_id"
PRODUCT_VIEW = "product_realtime"
PRODUCT_TTL_DAYS = 2

ProductKind = Literal["int64", "double"]
PRODUCT_FIELDS: dict[str, ProductKind] = {
    "views_1h": "int64",
    "carts_1h": "int64",
    "purchases_1h": "int64",
    "views_24h": "int64",
    "carts_24h": "int64",
    "purchases_24h": "int64",
    "trend": "double",
    "window_end_us": "int64",
}

# ``user_session``, keyed by ``user_id``: the shopper's latest session as the streaming job sees it (the
# run of their events ending at the newest in which no two follow each other more than 30 minutes
# apart): its products and their categories, newest first, its number of events and its first and last
# event times (``recommndr.streaming.sessions``). The write-through's ``user_realtime`` stays the
# request path's source of a shopper's recent products; the API compares the two (a consistency metric).
SESSION_VIEW = "user_session"
SESSION_TTL_DAYS = 2
SessionKind = Literal["int64", "int64_list", "string_list"]
SESSION_FIELDS: dict[str, SessionKind] = {
    "session_items": "int64_list",
    "session_categories": "string_list",
    "session_events": "int64",
    "session_start_us": "int64",
    "session_last_us": "int64",
}
