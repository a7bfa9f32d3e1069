"""What counting the producer's spool backlog costs each second while the broker is down: the full
count (``count_backlog``, every spooled byte read again) against the drainer's counter
(``BacklogCounter``, only what was appended since), on a spool of about ``--mb`` MiB in daily files, with
``--batch`` events appended between two counts. Medians of ``--repeat`` counts; the page cache is warm
(the spool was just written), so these are CPU and copy costs, not the disk's.

    .venv/bin/python benchmarks/bench_spool_backlog.py [--mb 512] [--batch 1000] [--repeat 7]

Last line: ``full_count_ms=… incremental_count_ms=… ratio=…``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from recommndr.streaming.producer import BacklogCounter, Offset, count_backlog

LINE = (
    b'{"event_id":"%032x","user_id":%d,"item_id":%d,"event_type":"view","ts":"2026-12-01T10:00:00+00:00",'
    b'"received_at":"2026-12-01T10:00:00.123456+00:00","session_id":0,"price":null,"quantity":1,"ts_ms":%d}\n'
)


def append(path: Path, first: int, n: int) -> int:
    data = b"".join(
        LINE % (i, i % 1_000_000, i % 100_000, 1_796_000_000_000 + i) for i in range(first, first + n)
    )
    with path.open("ab") as f:
        f.write(data)
    return n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--mb", type=int, default=512, help="spool size, MiB (about)")
    ap.add_argument("--batch", type=int, default=1000, help="events appended between two counts")
    ap.add_argument("--repeat", type=int, default=7)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-spool-") as tmp:
        root = Path(tmp)
        files = [root / f"events-2026-12-0{d}.jsonl" for d in (1, 2, 3)]
        per_line = len(LINE % (0, 0, 0, 1_796_000_000_000))
        lines = a.mb * 2**20 // per_line
        n = 0
        for f in files:
            n += append(f, n, lines // len(files))
        off = Offset(files[0].name, 1000 * per_line)  # the drain shipped a little of the first file
        full, inc = [], []
        counter = BacklogCounter()
        counter.count(root, off)
        for _ in range(a.repeat):
            n += append(files[-1], n, a.batch)
            t = time.perf_counter()
            got_full = count_backlog(root, off)
            full.append(time.perf_counter() - t)
            t = time.perf_counter()
            got_inc = counter.count(root, off)
            inc.append(time.perf_counter() - t)
            if got_full != got_inc:
                raise SystemExit(f"the counts differ: full {got_full}, incremental {got_inc}")
        f_ms, i_ms = statistics.median(full) * 1000, statistics.median(inc) * 1000
        print(
            f"spool: {sum(f.stat().st_size for f in files) / 2**20:,.0f} MiB in {len(files)} files, {got_full:,} events"
        )
        print(
            f"full count: median {f_ms:.1f} ms; incremental after {a.batch} new events: median {i_ms:.3f} ms"
        )
        print(f"full_count_ms={f_ms:.1f} incremental_count_ms={i_ms:.3f} ratio={f_ms / i_ms:.0f}")


if __name__ == "__main__":
    main()
