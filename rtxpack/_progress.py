"""Progress of long work (export, build, writing), and TensorRT-RTX's log on ``logging``.

``save``, ``build`` and ``rebuild`` take ``progress=``: a callable that gets one line per step
(``print`` will do), or a ``Progress`` object that also gets TensorRT-RTX's phases and steps
(``IProgressMonitor``: phase start with its number of steps, step done, phase done). The CLI
draws them with ``rich`` on a terminal (cli/_progress.py) and stays quiet otherwise.

TensorRT-RTX's own log goes to the ``rtxpack.tensorrt_rtx`` logger (errors as ERROR, warnings as
WARNING, info as INFO, verbose as DEBUG); ``rtxpack -v`` shows it. The ``rtxpack`` logger has a
``NullHandler``, so nothing is printed unless the application configures logging.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

__all__ = ["Progress", "as_progress", "trt_logger", "trt_progress_monitor"]

logging.getLogger("rtxpack").addHandler(logging.NullHandler())
_trt_log = logging.getLogger("rtxpack.tensorrt_rtx")


class Progress:
    """Receives what a long operation is doing. The base class ignores everything; override
    what you need. Phases nest (``parent`` is the enclosing phase's name, or None)."""

    def message(self, text: str) -> None:
        """One line about a step (``"main: building the engine with TensorRT-RTX"``)."""

    def phase_start(self, name: str, parent: str | None, steps: int) -> None:
        """A phase of ``steps`` steps (0: unknown) started."""

    def step(self, name: str, step: int) -> None:
        """Step ``step`` (0-based) of phase ``name`` is done."""

    def phase_finish(self, name: str) -> None:
        """Phase ``name`` ended."""


class _Lines(Progress):
    """A callable as a ``Progress``: every message, and each top-level phase as a timed line."""

    def __init__(self, report: Callable[[str], None]) -> None:
        self._report = report
        self._start = time.monotonic()

    def message(self, text: str) -> None:
        self._report(text)

    def phase_start(self, name: str, parent: str | None, steps: int) -> None:
        if parent is None:
            self._report(f"[{time.monotonic() - self._start:6.1f}s] {name}")


def as_progress(value: Progress | Callable[[str], None] | None) -> Progress:
    """``value`` as a ``Progress``: itself, a callable's wrapper, or one that ignores all."""
    if value is None:
        return Progress()
    if isinstance(value, Progress):
        return value
    if callable(value):
        return _Lines(value)
    from ._exceptions import InvalidArgumentError

    raise InvalidArgumentError(
        f"progress: expected a callable taking one str, or an rtxpack Progress; got "
        f"{type(value).__name__}"
    )


def trt_progress_monitor(trt: Any, progress: Progress) -> Any:
    """A ``tensorrt_rtx.IProgressMonitor`` that forwards to ``progress``. Exceptions in the
    receiver are logged and swallowed: they must not unwind through TensorRT-RTX."""

    class Monitor(trt.IProgressMonitor):  # type: ignore[misc]
        def __init__(self) -> None:
            trt.IProgressMonitor.__init__(self)

        def phase_start(self, phase_name: str, parent_phase: str | None, num_steps: int) -> None:
            try:
                progress.phase_start(phase_name, parent_phase, int(num_steps))
            except Exception:
                _trt_log.debug("progress receiver failed", exc_info=True)

        def step_complete(self, phase_name: str, step: int) -> bool:
            try:
                progress.step(phase_name, int(step))
            except Exception:
                _trt_log.debug("progress receiver failed", exc_info=True)
            return True

        def phase_finish(self, phase_name: str) -> None:
            try:
                progress.phase_finish(phase_name)
            except Exception:
                _trt_log.debug("progress receiver failed", exc_info=True)

    return Monitor()


def trt_logger(trt: Any, errors: list[str]) -> Any:
    """A ``tensorrt_rtx.ILogger`` that sends every message to the ``rtxpack.tensorrt_rtx``
    logger and keeps errors in ``errors`` (so that a failure can quote them)."""
    severity = trt.ILogger.Severity
    levels = {
        severity.INTERNAL_ERROR: logging.ERROR,
        severity.ERROR: logging.ERROR,
        severity.WARNING: logging.WARNING,
        severity.INFO: logging.INFO,
        severity.VERBOSE: logging.DEBUG,
    }

    class Logger(trt.ILogger):  # type: ignore[misc]
        def __init__(self) -> None:
            trt.ILogger.__init__(self)

        def log(self, sev: Any, msg: str) -> None:
            level = levels.get(sev, logging.INFO)
            if level >= logging.ERROR:
                errors.append(str(msg))
            if _trt_log.isEnabledFor(level):
                _trt_log.log(level, "%s", msg)

    return Logger()
