"""Batched log lines: written by the background thread, at once from WARNING up, and at close."""

from __future__ import annotations

import io
import logging
import time

from dsf_core.logstream import BatchedHandler, BatchedStream, LineFormatter


def _logger(stream: BatchedStream, name: str) -> logging.Logger:
    handler = BatchedHandler(stream)
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    logger = logging.getLogger(name)
    logger.handlers[:] = [handler]
    logger.propagate = False
    logger.setLevel(logging.INFO)
    return logger


def test_info_lines_wait_for_the_batch_and_warnings_go_out_at_once() -> None:
    target = io.StringIO()
    stream = BatchedStream(target, interval=3600)  # the thread stays asleep
    log = _logger(stream, "dsf.test.batched")
    log.info("first")
    log.info("second")
    assert target.getvalue() == ""
    log.warning("third")
    assert target.getvalue() == "INFO first\nINFO second\nWARNING third\n"
    log.info("fourth")
    stream.close()
    assert target.getvalue().endswith("INFO fourth\n")


def test_the_thread_writes_within_the_interval() -> None:
    target = io.StringIO()
    stream = BatchedStream(target, interval=0.01)
    log = _logger(stream, "dsf.test.batched.timer")
    log.info("line")
    deadline = time.monotonic() + 5
    while "INFO line\n" not in target.getvalue() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert target.getvalue() == "INFO line\n"
    stream.close()


def test_a_full_batch_is_written_without_waiting_for_the_interval() -> None:
    target = io.StringIO()
    stream = BatchedStream(target, interval=3600)
    log = _logger(stream, "dsf.test.batched.full")
    for n in range(2000):
        log.info("line %04d %s", n, "x" * 40)
    deadline = time.monotonic() + 5
    while not target.getvalue() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert target.getvalue().startswith("INFO line 0000")
    stream.close()
    assert target.getvalue().count("\n") == 2000


def test_the_line_formatter_writes_what_logging_s_own_formatter_writes() -> None:
    fmt = "%(asctime)s %(levelname)s %(name)s: %(message)s"
    ours, theirs = LineFormatter(fmt), logging.Formatter(fmt)
    base = 1_795_431_312.0
    for offset in (0.0, 0.0004, 0.072, 0.999, 1.0, 1.5, 61.25, 86_400.001, -0.5):
        record = logging.LogRecord("dsf.audit", logging.INFO, __file__, 1, "line %s", ("x",), None)
        record.created = base + offset
        record.msecs = int((record.created - int(record.created)) * 1000)  # as LogRecord computes it
        assert ours.format(record) == theirs.format(record), offset
