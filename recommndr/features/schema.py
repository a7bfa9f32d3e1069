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
