"""A hammer for hot-swap tests: client threads calling the API across a model swap, every call
and every exception recorded, and the check that each thread went from the old version to the
new one only (shared by the unit and the registry hot-swap tests)."""

from __future__ import annotations

import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from itertools import groupby

import pytest


@dataclass(frozen=True)
class Call:
    start: float  # time.monotonic() before the request was sent
    end: float  # and once its answer was read
    version: str


class Hammer:
    """Threads each sending ``request(thread, n)`` (which returns the served model version and
    raises on a bad answer) in a loop, keeping their calls in order and every exception raised.
    Also used by the registry hot-swap test in tests/integration."""

    def __init__(self, request: Callable[[int, int], str], n_threads: int) -> None:
        self._request = request
        self._stop = threading.Event()
        self.calls: list[list[Call]] = [[] for _ in range(n_threads)]
        self.errors: list[str] = []
        self._threads = [
            threading.Thread(target=self._loop, args=(i,), name=f"hammer-{i}", daemon=True)
            for i in range(n_threads)
        ]

    def _loop(self, i: int) -> None:
        n = 0
        try:
            while not self._stop.is_set():
                start = time.monotonic()
                version = self._request(i, n)
                self.calls[i].append(Call(start, time.monotonic(), version))
                n += 1
        except BaseException:  # the thread ends here; the test lists why
            self.errors.append(f"thread {i}, call {n}:\n{traceback.format_exc()}")

    def start(self) -> None:
        for t in self._threads:
            t.start()

    def wait_calls(self, n: int, started_after: float = 0.0, timeout_s: float = 30.0) -> None:
        """Until every thread has completed ``n`` calls sent after ``started_after``, a thread
        has failed, or the timeout (the final checks then say what is missing)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and not self.errors:
            if all(sum(c.start > started_after for c in list(cs)) >= n for cs in self.calls):
                return
            time.sleep(0.01)

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=30)
        alive = [t.name for t in self._threads if t.is_alive()]
        assert not alive, f"hammer threads still running after 30 s: {alive}"

    def check_swap(self, old: str, new: str, published_at: float, seen_at: float) -> None:
        """No thread failed; each made calls answered before ``published_at`` (the new bundle
        was published: old version) and sent after ``seen_at`` (``/ready`` said the new version:
        new version); each thread's versions are old then new, never new then old."""
        if self.errors:
            pytest.fail(f"{len(self.errors)} hammer thread(s) failed:\n" + "\n".join(self.errors))
        assert old != new
        for i, calls in enumerate(self.calls):
            before = [c.version for c in calls if c.end < published_at]
            after = [c.version for c in calls if c.start > seen_at]
            runs = ", ".join(f"{v} x{len(list(g))}" for v, g in groupby(c.version for c in calls))
            assert before and after, (
                f"thread {i} did not straddle the swap: {len(before)} calls before it, "
                f"{len(after)} after ({runs})"
            )
            assert set(before) == {old}, f"thread {i} before the swap: {runs}"
            assert set(after) == {new}, f"thread {i} after the swap: {runs}"
            versions = [c.version for c in calls]
            k = versions.index(new)
            assert versions == [old] * k + [new] * (len(versions) - k), f"thread {i}: {runs}"
