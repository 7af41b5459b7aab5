"""The HTTP/2-layer benchmark runs and prints a figure (no timing is asserted)."""

from __future__ import annotations

import pytest

from loadtest import h2_layer


@pytest.mark.parametrize("args", [[], ["--traced", "--wanted=traceparent"]])
def test_prints_cpu_per_stream(args: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert h2_layer.main(args) == 0
    value, unit = capsys.readouterr().out.split()
    assert float(value) > 0 and unit == "us/stream"
