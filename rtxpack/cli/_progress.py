"""The CLI's progress display: rich progress bars on a terminal, nothing otherwise.

One bar per running phase (TensorRT-RTX's build phases nest: a bar per level, indented), with its
steps when the phase has a known number, else a spinner; messages print above the bars.
"""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Iterator
from typing import Any

from .._progress import Progress

__all__ = ["TerminalProgress", "progress_for", "trt_log_to_stderr"]


class TerminalProgress(Progress):
    """A ``Progress`` drawn with ``rich.progress`` on stderr. Use as a context manager."""

    def __init__(self, console: Any = None) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            SpinnerColumn,
            TextColumn,
            TimeElapsedColumn,
        )
        from rich.progress import (
            Progress as RichProgress,
        )

        self.console = console or Console(stderr=True)
        self._bars = RichProgress(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=self.console,
            transient=True,
        )
        self._tasks: dict[str, Any] = {}
        self._depth: dict[str, int] = {}

    def __enter__(self) -> TerminalProgress:
        self._bars.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._bars.stop()

    def message(self, text: str) -> None:
        self._bars.console.print(text, markup=False, highlight=False)

    def phase_start(self, name: str, parent: str | None, steps: int) -> None:
        depth = self._depth.get(parent, -1) + 1 if parent is not None else 0
        self._depth[name] = depth
        self._tasks[name] = self._bars.add_task("  " * depth + name, total=steps or None)

    def step(self, name: str, step: int) -> None:
        task = self._tasks.get(name)
        if task is not None:
            self._bars.update(task, completed=step + 1)

    def phase_finish(self, name: str) -> None:
        task = self._tasks.pop(name, None)
        self._depth.pop(name, None)
        if task is not None:
            self._bars.remove_task(task)


class _Quiet(Progress):
    def __enter__(self) -> _Quiet:
        return self

    def __exit__(self, *exc: object) -> None:
        pass


def progress_for(quiet: bool, stream: Any = None) -> TerminalProgress | _Quiet:
    """Bars when not ``quiet`` and stderr is a terminal; otherwise a progress that says nothing."""
    stream = sys.stderr if stream is None else stream
    if quiet or not getattr(stream, "isatty", lambda: False)():
        return _Quiet()
    return TerminalProgress()


@contextlib.contextmanager
def trt_log_to_stderr(verbosity: int) -> Iterator[None]:
    """``-v``: TensorRT-RTX's log (the ``rtxpack.tensorrt_rtx`` logger) on stderr at INFO;
    ``-vv``: also its verbose messages (DEBUG). Nothing without ``-v``."""
    if verbosity <= 0:
        yield
        return
    log = logging.getLogger("rtxpack.tensorrt_rtx")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("tensorrt_rtx %(levelname)s: %(message)s"))
    old = log.level
    log.addHandler(handler)
    log.setLevel(logging.INFO if verbosity == 1 else logging.DEBUG)
    try:
        yield
    finally:
        log.removeHandler(handler)
        log.setLevel(old)
