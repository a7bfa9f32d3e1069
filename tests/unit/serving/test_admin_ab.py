"""A/B split by a stable hash of the user, and the admin endpoints' JWT + IP guard."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import jwt
import pytest
from fastapi.testclient import TestClient

from recommndr.config import get_settings
from recommndr.serving.app import create_app

pytestmark = pytest.mark.unit
SECRET = "test-admin-key-0123456789abcdef0123"


def token(
    secret: str = SECRET,
    exp: float | None = None,
    aud: str = "recommndr-admin",
    iss: str = "recommndr",
    iat: float | None = None,
) -> str:
    now = time.time()
    claims = {"sub": "ops@example.invalid", "iss": iss, "aud": aud, "exp": int(exp or now + 300),
              "iat": int(iat if iat is not None else now)}  # fmt: skip
    return jwt.encode(claims, secret, algorithm="HS256")


def token_without_iat() -> str:
    claims = {"sub": "ops", "iss": "recommndr", "aud": "recommndr-admin", "exp": int(time.time() + 300)}
    return jwt.encode(claims, SECRET, algorithm="HS256")


@pytest.fixture
def app_env(challenger_artifacts: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.setenv("RECOMMNDR_ADMIN_JWT_SECRET", SECRET)
    monkeypatch.setenv("RECOMMNDR_CHALLENGER_ARTIFACTS_DIR", str(challenger_artifacts))
    get_settings.cache_clear()
    yield tmp_path
    get_settings.cache_clear()


def _client(artifacts: Path, tmp: Path, ip: str = "127.0.0.1") -> TestClient:
    return TestClient(create_app(artifacts, tmp / "events"), client=(ip, 50000))


def test_split_is_stable_per_user_and_rollback_returns_everyone(app_env: Path, artifacts: Path) -> None:
    with _client(artifacts, app_env) as c:
        models = c.get("/models").json()
        assert [m["variant"] for m in models["models"]] == ["champion", "challenger"]
        assert models["traffic"] == {"champion": 1.0, "challenger": 0.0}
        auth = {"Authorization": f"Bearer {token()}"}
        r = c.post("/models/traffic", json={"challenger": 0.5}, headers=auth)
        assert r.status_code == 200 and r.json()["traffic"] == {"champion": 0.5, "challenger": 0.5}
        seen = {u: c.get(f"/recommendations/{u}?k=3").json()["variant"] for u in range(1, 81)}
        assert set(seen.values()) == {"champion", "challenger"}
        assert 20 < sum(v == "challenger" for v in seen.values()) < 60
        assert all(c.get(f"/recommendations/{u}?k=3").json()["variant"] == seen[u] for u in range(1, 21))
        text = c.get("/metrics").text
        assert 'recommndr_recommendations_served_total{path="two_stage",variant="challenger"}' in text
        # the canary's trials: 3 products shown per list (100 lists, the 80 above and 20 again)
        shown = sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                    if line.startswith("recommndr_impressions_total{"))  # fmt: skip
        assert shown == 3 * 100
        by_bucket = [line for line in text.splitlines() if line.startswith("recommndr_canary_bucket_total{")
                     and 'kind="impressions"' in line]  # fmt: skip
        assert sum(float(line.rsplit(" ", 1)[1]) for line in by_bucket) == 3 * 100 and len(by_bucket) > 10
        r = c.post("/models/rollback", json={"reason": "CTR dropped"}, headers=auth)
        assert r.status_code == 200 and r.json()["traffic"]["challenger"] == 0.0
        assert {c.get(f"/recommendations/{u}?k=3").json()["variant"] for u in range(1, 41)} == {"champion"}
        bad = c.post("/models/traffic", json={"challenger": 1.5}, headers=auth)
        assert bad.status_code == 422 and "challenger" in bad.json()["error"]["message"]


def _bearer(make: Callable[[], str]) -> Callable[[], dict[str, str]]:
    return lambda: {"Authorization": f"Bearer {make()}"}


# each case's headers are made when the test runs (a token made at collection could expire
# before a slow run reaches it)
@pytest.mark.parametrize(
    ("headers", "status", "message"),
    [
        (lambda: {}, 401, "bearer token is required"),
        (lambda: {"Authorization": "Basic abc"}, 401, "bearer token is required"),
        (_bearer(lambda: token(exp=time.time() - 120, iat=time.time() - 600)), 401, "expired"),
        (
            _bearer(lambda: token(secret="another-key-0123456789abcdef012345")),
            401,
            "Signature verification failed",
        ),
        (_bearer(lambda: token(aud="someone-else")), 401, "Audience"),
        (_bearer(lambda: token(iss="evil")), 401, "issuer"),
        (lambda: {"Authorization": "Bearer not.a.jwt"}, 401, "invalid token"),
        (_bearer(token_without_iat), 401, '"iat"'),
        # a long-lived token is refused even though it is valid and signed
        (_bearer(lambda: token(exp=time.time() + 7 * 86400)), 401, "at most 3600 s"),
        (_bearer(lambda: token(iat=time.time() + 600, exp=time.time() + 900)), 401, "iat"),
    ],
)
def test_admin_refuses_bad_tokens(
    app_env: Path, artifacts: Path, headers: Callable[[], dict[str, str]], status: int, message: str
) -> None:
    with _client(artifacts, app_env) as c:
        for path, body in (("/models/traffic", {"challenger": 0.1}), ("/models/rollback", {})):
            r = c.post(path, json=body, headers=headers())
            assert r.status_code == status, r.json()
            assert message in r.json()["error"]["message"]
        assert c.get("/models").json()["traffic"]["challenger"] == 0.0  # nothing changed


def test_admin_refuses_a_disallowed_ip_even_with_a_good_token(app_env: Path, artifacts: Path) -> None:
    with _client(artifacts, app_env, ip="10.20.30.40") as c:
        r = c.post(
            "/models/traffic", json={"challenger": 0.3}, headers={"Authorization": f"Bearer {token()}"}
        )
        assert r.status_code == 403 and "10.20.30.40 is not allowed" in r.json()["error"]["message"]


def test_admin_is_off_without_a_key(artifacts: Path, tmp_path: Path) -> None:
    with _client(artifacts, tmp_path) as c:
        r = c.post("/models/rollback", json={}, headers={"Authorization": f"Bearer {token()}"})
        assert r.status_code == 403 and "disabled" in r.json()["error"]["message"]


def test_the_split_is_shared_by_worker_processes_and_survives_a_restart(
    app_env: Path, artifacts: Path
) -> None:
    auth = {"Authorization": f"Bearer {token()}"}
    with _client(artifacts, app_env) as a, _client(artifacts, app_env) as b:  # two workers, one file
        r = a.post("/models/traffic", json={"challenger": 0.25}, headers=auth)
        assert r.status_code == 200 and r.json()["shared"] is True
        deadline = time.monotonic() + 10
        while b.get("/models").json()["traffic"].get("challenger") != 0.25:
            assert time.monotonic() < deadline, "the other worker did not pick up the split"
            time.sleep(0.2)
    with _client(artifacts, app_env) as c:  # a restart keeps the admin's split
        assert c.get("/models").json()["traffic"] == {"champion": 0.75, "challenger": 0.25}
        assert c.post("/models/rollback", json={"reason": "test"}, headers=auth).json()["shared"] is True
    with _client(artifacts, app_env) as c:
        assert c.get("/models").json()["traffic"]["challenger"] == 0.0


def test_a_forwarded_for_header_from_an_untrusted_peer_is_ignored(app_env: Path, artifacts: Path) -> None:
    with _client(artifacts, app_env, ip="10.20.30.40") as c:  # claims to be localhost: still refused
        r = c.post(
            "/models/traffic",
            json={"challenger": 0.3},
            headers={"Authorization": f"Bearer {token()}", "X-Forwarded-For": "127.0.0.1"},
        )
        assert r.status_code == 403 and "10.20.30.40 is not allowed" in r.json()["error"]["message"]


def test_a_trusted_proxy_forwards_the_client_address(
    app_env: Path, artifacts: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RECOMMNDR_TRUSTED_PROXIES", '["10.0.0.0/8"]')
    get_settings.cache_clear()
    auth = {"Authorization": f"Bearer {token()}"}
    with _client(artifacts, app_env, ip="10.20.30.40") as c:
        # only the last hop (appended by the proxy) counts; the caller wrote the first one
        ok = c.post(
            "/models/rollback", json={}, headers={**auth, "X-Forwarded-For": "6.6.6.6, 127.0.0.1:4711"}
        )
        assert ok.status_code == 200, ok.json()
        bad = c.post("/models/rollback", json={}, headers={**auth, "X-Forwarded-For": "127.0.0.1, 6.6.6.6"})
        assert bad.status_code == 403 and "6.6.6.6 is not allowed" in bad.json()["error"]["message"]


@pytest.mark.parametrize("secret", ["short", "x" * 31])
def test_an_admin_secret_under_32_bytes_is_refused_at_start_up(
    secret: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from recommndr.config import ConfigError

    monkeypatch.setenv("RECOMMNDR_ADMIN_JWT_SECRET", secret)
    get_settings.cache_clear()
    with pytest.raises(ConfigError, match=r"RECOMMNDR_ADMIN_JWT_SECRET.*at least 32"):
        get_settings()


def test_every_forwarded_for_line_counts_and_the_last_hop_decides(
    app_env: Path, artifacts: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RECOMMNDR_TRUSTED_PROXIES", '["10.0.0.0/8"]')
    get_settings.cache_clear()
    auth = ("authorization", f"Bearer {token()}")
    with _client(artifacts, app_env, ip="10.20.30.40") as c:
        # the caller's own line first, the proxy's line (not merged into it) last
        two_lines = [auth, ("x-forwarded-for", "127.0.0.1"), ("x-forwarded-for", "6.6.6.6")]
        r = c.post("/models/rollback", json={}, headers=two_lines)
        assert r.status_code == 403 and "6.6.6.6 is not allowed" in r.json()["error"]["message"]
        # a trusted proxy that names no client: unknown, not the proxy's own address
        r = c.post("/models/rollback", json={}, headers=[auth])
        assert r.status_code == 403 and "unknown" in r.json()["error"]["message"]


def test_without_a_socket_peer_outside_the_functions_host_the_client_is_unknown() -> None:
    from recommndr.serving.auth import client_address

    assert client_address(None, "127.0.0.1", [], functions_host=False) is None
    assert client_address(None, "6.6.6.6, 127.0.0.1:5000", [], functions_host=True) == "127.0.0.1"
    assert client_address("127.0.0.1", "6.6.6.6", [], functions_host=True) == "127.0.0.1"  # a socket: itself
    assert client_address(None, "[::1]:443", [], functions_host=True) == "::1"


def test_admin_bodies_are_capped_before_anything_else(app_env: Path, artifacts: Path) -> None:
    with _client(artifacts, app_env, ip="10.20.30.40") as c:  # not even an allowed caller
        big = b'{"reason": "' + b"x" * (2 << 20) + b'"}'
        r = c.post("/models/rollback", content=big, headers={"content-type": "application/json"})
        assert r.status_code == 413 and r.json()["error"]["code"] == "payload_too_large"

        def streamed() -> Iterator[bytes]:
            yield b'{"reason": "'
            for _ in range(40):
                yield b"x" * 65536
            yield b'"}'

        r = c.post("/models/rollback", content=streamed(), headers={"content-type": "application/json"})
        assert r.status_code == 413 and r.json()["error"]["code"] == "payload_too_large"


@pytest.mark.parametrize("var", ["RECOMMNDR_ADMIN_ALLOWED_NETWORKS", "RECOMMNDR_TRUSTED_PROXIES"])
def test_a_network_setting_that_is_not_cidr_is_refused_at_start_up(
    var: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from recommndr.config import ConfigError

    monkeypatch.setenv(var, '["10.0.0.0/8", "my-office"]')
    get_settings.cache_clear()
    with pytest.raises(ConfigError, match="'my-office' is not a network"):
        get_settings()
