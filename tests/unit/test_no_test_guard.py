"""A test run that executes no test must fail (tests/conftest.py's guard)."""

from __future__ import annotations

from pathlib import Path

import pytest

pytestmark = pytest.mark.unit
GUARD = (Path(__file__).resolve().parents[1] / "conftest.py").read_text()


def test_all_skipped_run_fails(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(GUARD)
    pytester.makepyfile(test_x="import pytest\n\n@pytest.mark.skip\ndef test_a():\n    pass\n")
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.NO_TESTS_COLLECTED


def test_run_with_a_passing_test_succeeds(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(GUARD)
    pytester.makepyfile(test_x="def test_a():\n    assert 1 + 1 == 2\n")
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.OK
