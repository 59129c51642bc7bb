"""Progress of a generation call: requests done, new tokens and tokens/s, as a bar in a terminal and as log lines
(every 30 s and at the end) when the output goes to a file."""

from __future__ import annotations

import time
from types import TracebackType

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from qwen_tool.log import console, logger

LOG_EVERY_S = 30.0


class DecodeProgress:
    """Use as a context manager; call `tokens(n)` per decoding step and `done()` per finished request."""

    def __init__(self, description: str | None, total: int) -> None:
        self.description, self.total = description, total
        self.requests = self.new_tokens = 0
        self.started = self._logged = time.perf_counter()
        self._bar: Progress | None = None
        if description is not None and console.is_terminal:
            self._bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                 TextColumn("{task.fields[rate]}"), TimeRemainingColumn(), console=console,
                                 transient=True)
            self._task = self._bar.add_task(description, total=total, rate="")

    def __enter__(self) -> DecodeProgress:
        if self._bar is not None:
            self._bar.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        if self._bar is not None:
            self._bar.stop()
        if self.description is not None and kind is None and self.requests:
            logger.info("%s: %s", self.description, self.summary())

    @property
    def tokens_per_s(self) -> float:
        return self.new_tokens / max(1e-9, time.perf_counter() - self.started)

    def summary(self) -> str:
        seconds = time.perf_counter() - self.started
        return (f"{self.requests}/{self.total} requests, {self.new_tokens:,} new tokens in {seconds:.1f} s "
                f"({self.tokens_per_s:.1f} tokens/s)")

    def tokens(self, count: int) -> None:
        self.new_tokens += count
        if self._bar is not None:
            self._bar.update(self._task, rate=f"{self.tokens_per_s:.1f} tok/s")
        elif self.description is not None and time.perf_counter() - self._logged >= LOG_EVERY_S:
            self._logged = time.perf_counter()
            logger.info("%s: %s", self.description, self.summary())

    def done(self, count: int = 1) -> None:
        self.requests += count
        if self._bar is not None:
            self._bar.advance(self._task, count)
