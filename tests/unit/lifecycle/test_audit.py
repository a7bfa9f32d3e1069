"""The audit trail: a hash chain that finds any edited, removed or reordered line, kept whole by
several processes appending at once, with bounded lines and reads."""

from __future__ import annotations

import hashlib
import json
import multiprocessing
from pathlib import Path

import pytest

from recommndr.errors import ArtifactError
from recommndr.lifecycle.audit import MAX_LINE_BYTES, MAX_READ, AuditTrail, entry_hash

pytestmark = pytest.mark.unit


def test_entries_chain_each_to_the_line_before(tmp_path: Path) -> None:
    trail = AuditTrail(tmp_path / "audit" / "audit.jsonl")  # the folder is created
    assert trail.verify() == 0 and trail.read() == []
    first = trail.append("alias", "ops@example.invalid", "manual promotion",
                         {"model": "m", "alias": "champion", "version": "7", "previous": "6"})  # fmt: skip
    second = trail.append("traffic", "workflow", "canary step 1", {"challenger": 0.05})
    assert first["seq"] == 1 and first["prev"] == "" and second["seq"] == 2
    lines = trail.path.read_bytes().splitlines()
    assert second["prev"] == hashlib.sha256(lines[0]).hexdigest()
    assert first["hash"] == entry_hash(first) and json.loads(lines[1]) == second
    assert first["at"].endswith("+00:00")  # UTC
    assert trail.verify() == 2
    assert [e["seq"] for e in trail.read()] == [1, 2]
    assert [e["seq"] for e in trail.read(after=1)] == [2]
    assert trail.read(after=2) == [] and [e["seq"] for e in trail.read(limit=1)] == [1]


def _write_lines(path: Path, lines: list[bytes]) -> None:
    path.write_bytes(b"".join(line + b"\n" for line in lines))


def _trail(tmp_path: Path, n: int = 4) -> AuditTrail:
    trail = AuditTrail(tmp_path / "audit.jsonl")
    for i in range(n):
        trail.append("canary_step", "workflow", f"step {i}", {"share": i / 10})
    return trail


def test_an_edited_line_breaks_the_chain(tmp_path: Path) -> None:
    trail = _trail(tmp_path)
    lines = trail.path.read_bytes().splitlines()
    edited = json.loads(lines[1])
    edited["by"] = "someone else"
    _write_lines(trail.path, [lines[0], json.dumps(edited).encode(), *lines[2:]])
    with pytest.raises(ArtifactError, match="line 2 was changed"):
        trail.verify()
    # rehashing the edited line does not help: the next line names the original
    edited["hash"] = entry_hash(edited)
    _write_lines(trail.path, [lines[0], json.dumps(edited).encode(), *lines[2:]])
    with pytest.raises(ArtifactError, match="line 3 does not follow line 2"):
        trail.verify()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda ls: [ls[0], *ls[2:]], "line 2 has seq 3"),  # a line removed
        (lambda ls: [ls[1], ls[0], *ls[2:]], "line 1 has seq 2"),  # reordered
        (lambda ls: [*ls[:2], b"not json", *ls[2:]], "line 3 is not JSON"),
        (lambda ls: [*ls[:2], b"[1, 2]", *ls[2:]], "line 3 is not an entry"),
    ],
)
def test_removed_reordered_or_foreign_lines_break_the_chain(tmp_path: Path, change, message) -> None:  # type: ignore[no-untyped-def]
    trail = _trail(tmp_path)
    _write_lines(trail.path, change(trail.path.read_bytes().splitlines()))
    with pytest.raises(ArtifactError, match=message):
        trail.verify()


def test_a_torn_last_line_is_found_and_nothing_is_chained_to_it(tmp_path: Path) -> None:
    trail = _trail(tmp_path, 2)
    with trail.path.open("ab") as f:
        f.write(b'{"seq": 3, "act')
    with pytest.raises(ArtifactError, match="line 3 is incomplete"):
        trail.verify()
    with pytest.raises(ArtifactError, match="incomplete"):
        trail.append("pause", "ops", "x")


def _append_many(path: str, worker: int, n: int) -> None:
    trail = AuditTrail(Path(path))
    for i in range(n):
        trail.append("traffic", f"worker-{worker}", f"append {i}", {"i": i, "pad": "x" * (97 * worker)})


def test_processes_appending_at_once_keep_seq_unique_and_the_chain_whole(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    ctx = multiprocessing.get_context("spawn")  # a fresh interpreter each, as separate workers are
    procs = [ctx.Process(target=_append_many, args=(str(path), w, 40)) for w in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    trail = AuditTrail(path)
    assert trail.verify() == 160
    entries = trail.read(limit=MAX_READ)
    assert [e["seq"] for e in entries] == list(range(1, 161))
    # every worker's appends are there, each worker's in its own order
    for w in range(4):
        mine = [e["details"]["i"] for e in entries if e["by"] == f"worker-{w}"]
        assert mine == list(range(40))


def test_lines_and_reads_are_bounded(tmp_path: Path) -> None:
    trail = AuditTrail(tmp_path / "audit.jsonl")
    big = trail.append("retrain", "workflow", "huge details", {"blob": "y" * (2 * MAX_LINE_BYTES)})
    assert big["details"]["truncated"] is True and big["details"]["bytes"] > 2 * MAX_LINE_BYTES
    assert len(trail.path.read_bytes()) <= MAX_LINE_BYTES + 1
    # a line of just under the bound still chains (the line before is found)
    fill = "z" * (MAX_LINE_BYTES - 400)
    trail.append("retrain", "workflow", "long", {"blob": fill})
    trail.append("retrain", "workflow", "after")
    assert trail.verify() == 3
    for bad in (
        dict(action="Promote!", by="ops", reason="x"),
        dict(action="promote", by="o" * 300, reason="x"),
        dict(action="promote", by="ops", reason="r" * 3000),
        dict(action="promote", by="ops", reason="x", details={"v": float("nan")}),
        dict(action="promote", by="ops", reason="\ud800"),
    ):
        with pytest.raises(ValueError):
            trail.append(**bad)  # type: ignore[arg-type]
    assert trail.verify() == 3  # nothing was written by the refusals
    for after, limit in ((-1, 10), (0, 0), (0, MAX_READ + 1)):
        with pytest.raises(ValueError, match="limit"):
            trail.read(after, limit)


def test_a_line_over_the_bound_is_refused_unread(tmp_path: Path) -> None:
    trail = _trail(tmp_path, 1)
    with trail.path.open("ab") as f:
        f.write(b"{" + b" " * (MAX_LINE_BYTES + 10) + b"}\n")
    with pytest.raises(ArtifactError, match="line 2 is over"):
        trail.verify()
    with pytest.raises(ArtifactError, match="over"):
        trail.append("pause", "ops", "x")
