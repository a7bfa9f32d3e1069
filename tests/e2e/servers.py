"""Helpers of the browser tests: server subprocesses on free loopback ports, readiness, the build check."""

from __future__ import annotations

import os
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import jwt
import pytest

REPO = Path(__file__).resolve().parents[2]
FRONTEND = REPO / "frontend"
# what `next build` compiles: a build older than any of these is stale
FRONTEND_SOURCES = (
    "app",
    "components",
    "lib",
    "types",
    "instrumentation.ts",
    "next.config.ts",
    "package-lock.json",
    "tsconfig.json",
)
BUILD_HINT = "run `make setup` (npm ci and next build in frontend/)"


def log_tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


@contextmanager
def running(
    cmd: list[str], *, env: dict[str, str], cwd: Path, log: Path
) -> Iterator[subprocess.Popen[bytes]]:
    """A server subprocess in its own process group, stopped (group and all) on exit."""
    with log.open("wb") as out:
        proc = subprocess.Popen(
            cmd, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            yield proc
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()


def wait_ok(url: str, proc: subprocess.Popen[bytes], log: Path, timeout: float = 120.0) -> None:
    """Until ``url`` answers 200; fails early, with the server's log, if the server exits."""
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            what = " ".join(str(a) for a in proc.args) if isinstance(proc.args, list) else str(proc.args)
            pytest.fail(f"{what} exited with {proc.returncode} before {url} was up:\n{log_tail(log)}")
        try:
            with urllib.request.urlopen(url, timeout=5) as res:
                if res.status == 200:
                    return
        except (urllib.error.URLError, OSError) as exc:
            last = str(exc)
        time.sleep(0.25)
    pytest.fail(f"{url} not ready after {timeout:.0f} s ({last}):\n{log_tail(log)}")


def clean_env(**extra: str) -> dict[str, str]:
    """This environment without any RECOMMNDR_* setting a developer may have exported, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RECOMMNDR_")}
    env.update(OPENBLAS_NUM_THREADS="1", NEXT_TELEMETRY_DISABLED="1", **extra)
    return env


def check_build() -> Path:
    """The storefront's ``next`` binary; fails (never skips) when the build is missing or stale."""
    next_bin = FRONTEND / "node_modules" / ".bin" / "next"
    build_id = FRONTEND / ".next" / "BUILD_ID"
    if not next_bin.exists():
        pytest.fail(f"{next_bin} is missing: {BUILD_HINT}")
    if not build_id.exists():
        pytest.fail(f"the storefront is not built ({build_id} is missing): {BUILD_HINT}")
    built = build_id.stat().st_mtime
    for name in FRONTEND_SOURCES:
        root = FRONTEND / name
        files = [root] if root.is_file() else [p for p in root.rglob("*") if p.is_file()]
        newer = [p for p in files if p.stat().st_mtime > built]
        if newer:
            pytest.fail(f"the storefront build is older than {newer[0].relative_to(REPO)}: {BUILD_HINT}")
    return next_bin


# the ops page's tests: the API's admin key, and the loopback address the storefront's admin route
# calls the API from (RECOMMNDR_ADMIN_PROXY), the API's one trusted proxy: the tests' own calls
# from 127.0.0.1 are still seen as themselves
ADMIN_SECRET = "e2e-admin-key-0123456789abcdef0123456789"
ADMIN_PROXY_SOURCE = "127.0.0.2"


def admin_token(secret: str = ADMIN_SECRET, lifetime_s: int = 900) -> str:
    """An admin JWT as the API expects it (recommndr/serving/auth.py check_admin)."""
    now = int(time.time())
    claims = {"sub": "e2e-operator", "iss": "recommndr", "aud": "recommndr-admin", "iat": now,
              "exp": now + lifetime_s}  # fmt: skip
    return jwt.encode(claims, secret, algorithm="HS256")
