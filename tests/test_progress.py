"""The progress line: plain periodic lines (done/total, rate, ETA) when stdout is not a terminal, an
in-place line on a terminal."""

import io

from ddjax import progress


class _Terminal(io.StringIO):
    def isatty(self):
        return True


def test_plain_lines_when_not_a_terminal():
    out = io.StringIO()
    for _ in progress.bar(
        range(4), total=4, desc="zero-shot smoke", unit="batch", every=0.0, stream=out
    ):
        pass
    lines = out.getvalue().splitlines()
    assert "\r" not in out.getvalue() and "\x1b" not in out.getvalue()  # no cursor control in a log
    assert lines[0].startswith("zero-shot smoke: 0/4 batch [00:00<?")
    assert any(
        line.startswith("zero-shot smoke: 2/4 batch [") and "batch/s]" in line for line in lines
    )
    # elapsed<ETA
    assert lines[-1].startswith("zero-shot smoke: 4/4 batch [") and "<00:00" in lines[-1]


def test_plain_lines_are_periodic():
    out = io.StringIO()
    with progress.bar(total=1000, desc="attack", unit="step", every=3600.0, stream=out) as bar:
        for _ in range(1000):
            bar.update(1)
    lines = out.getvalue().splitlines()
    # start and end, not 1000 lines
    assert len(lines) <= 3 and lines[-1].startswith("attack: 1000/1000 step")


def test_in_place_on_a_terminal():
    out = _Terminal()
    for _ in progress.bar(range(3), total=3, desc="prepare", unit="shape", stream=out):
        pass
    assert "\r" in out.getvalue() and "3/3" in out.getvalue()
