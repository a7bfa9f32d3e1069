"""The A/B traffic split between the champion and the challenger: a stable assignment of each
user, and the admin's split shared by every worker process through one file (kept across
restarts, written atomically)."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from pathlib import Path

log = logging.getLogger(__name__)

CHAMPION = "champion"
CHALLENGER = "challenger"
BUCKETS = 32  # shopper buckets of the canary's variance (recommndr_canary_bucket_total)


def bucket_of(user_id: int) -> int:
    """The shopper's variance bucket: a hash independent of the variant assignment's (salted), so
    each variant's shoppers spread over every bucket at random."""
    return int.from_bytes(hashlib.blake2b(b"bucket:%d" % user_id, digest_size=8).digest(), "big") % BUCKETS


class TrafficSplit:
    """Shares of users per variant. ``shares`` is replaced whole, never mutated, so a request
    reads one consistent split without a lock."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.shares: dict[str, float] = {CHAMPION: 1.0}
        self._mtime = 0  # of the shared file last applied

    @property
    def challenger_share(self) -> float:
        return self.shares.get(CHALLENGER, 0.0)

    def set(self, challenger: float) -> None:
        """This worker's split (the champion serves the rest)."""
        self.shares = {CHAMPION: 1.0 - challenger, CHALLENGER: challenger}

    def reset(self) -> None:
        """No challenger: the champion serves everyone."""
        self.shares = {CHAMPION: 1.0}

    def assign(self, user_id: int) -> str:
        """The user's variant: a stable hash of the id against the challenger's share."""
        share = self.challenger_share
        if share <= 0.0:
            return CHAMPION
        h = int.from_bytes(hashlib.blake2b(str(user_id).encode(), digest_size=8).digest(), "big") / 2**64
        return CHALLENGER if h < share else CHAMPION

    def save(self, challenger: float, by: str, reason: str) -> bool:
        """Save the split for the other workers (this one has applied it already either way);
        False, logged, when the file cannot be written."""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_text(
                json.dumps({"challenger": challenger, "by": by, "reason": reason, "at": time.time()})
            )
            tmp.replace(self.path)
            self._mtime = self.path.stat().st_mtime_ns
            return True
        except OSError as exc:
            log.error("traffic split applied here but not saved to %s: %s", self.path, exc)
            return False

    def sync(self, has_challenger: bool) -> None:
        """Apply the shared file if it changed (other workers' admin calls, a restart)."""
        try:
            mtime = self.path.stat().st_mtime_ns
        except OSError:
            return
        if mtime == self._mtime:
            return
        self._mtime = mtime
        try:
            share = float(json.loads(self.path.read_text())["challenger"])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.error("ignoring the traffic file %s: %s", self.path, exc)
            return
        if has_challenger and 0.0 <= share <= 1.0:
            self.set(share)
