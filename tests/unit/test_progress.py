"""Progress of long runs: redrawn on a terminal, sparse lines in a log."""

from __future__ import annotations

import io

from hetero.progress import Progress


class _Tty(io.StringIO):
    def isatty(self):
        return True


def test_a_log_gets_a_line_every_5_percent_and_the_last():
    log = io.StringIO()
    bar = Progress(100, stream=log)
    for i in range(100):
        bar.step(f"case {i}")
    bar.done()
    lines = log.getvalue().splitlines()
    assert len(lines) == 21 and "\r" not in log.getvalue()
    assert lines[0].startswith("[1/100 ") and lines[-1].startswith("[100/100 ")
    assert lines[-1].endswith("case 99")


def test_a_terminal_gets_one_redrawn_line():
    tty = _Tty()
    bar = Progress(3, stream=tty)
    for i in range(3):
        bar.step(f"case {i}")
    bar.done()
    text = tty.getvalue()
    assert text.count("\r") == 3 and text.endswith("\n") and "3/3" in text


def test_disabled_prints_nothing():
    log = io.StringIO()
    bar = Progress(5, enabled=False, stream=log)
    bar.note("peaks")
    bar.step("x")
    bar.done()
    assert log.getvalue() == ""
