"""Write a bundle again in the current format (same models: what ``recommndr train`` would save
from them now), to compare formats without retraining; prints each file's size before and after.

    .venv/bin/python benchmarks/rewrite_bundle.py SRC DEST

SRC is any bundle this version loads (verified against its manifest); DEST a new folder. The new
manifest is signed with RECOMMNDR_BUNDLE_SIGNING_KEY when it is set.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("src", type=Path)
    ap.add_argument("dest", type=Path)
    a = ap.parse_args()
    from recommndr.loading import rewrite_bundle

    t0 = time.perf_counter()
    manifest = rewrite_bundle(a.src, a.dest)
    took = time.perf_counter() - t0
    total = [0, 0]
    print(f"{'file':24s} {'before MB':>10s} {'after MB':>10s}")
    for name in sorted(manifest["files"]):
        before, after = ((p / name).stat().st_size / 2**20 for p in (a.src, a.dest))
        total[0], total[1] = total[0] + before, total[1] + after
        print(f"{name:24s} {before:10.1f} {after:10.1f}")
    print(f"{'total':24s} {total[0]:10.1f} {total[1]:10.1f}")
    print(f"format {manifest['format']} written to {a.dest} in {took:.1f} s")


if __name__ == "__main__":
    main()
