"""Run progress for a terminal (rich bars) or a log file (plain lines).

Rich draws its bars only on a terminal: written to a file or a pipe (``nohup``, a cluster job's
log) it shows nothing until the run ends, which read as a hang on a 7-minute full-context
configuration. Without a terminal, each progress report is one flushed line instead, with the
elapsed time and the time left at the rate so far.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.console import Console

ProgressHook = Callable[[str, int, int], None]  # (configuration name, done, total)


def _duration(seconds: float) -> str:
    minutes, secs = divmod(round(seconds), 60)
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


class ProgressLines:
    """One line per change of a configuration's count: ``rag k=1: 12/50 questions (1m05s, ~3m25s
    left)``. Questions already on disk (a resumed run) do not count towards the rate."""

    def __init__(self, console: Console, clock: Callable[[], float] = time.monotonic) -> None:
        self.console = console
        self.clock = clock
        self.start: dict[str, tuple[float, int]] = {}
        self.last: dict[str, int] = {}

    def __call__(self, name: str, done: int, total: int) -> None:
        if self.last.get(name) == done:
            return
        self.last[name] = done
        now = self.clock()
        started, first = self.start.setdefault(name, (now, done))
        elapsed = now - started
        line = f"{name}: {done}/{total} questions"
        if done > first:
            left = elapsed / (done - first) * (total - done)
            line += f" ({_duration(elapsed)}, ~{_duration(left)} left)"
        elif first:
            line += " already on disk" if done == total else f" ({first} already on disk)"
        self.console.print(line, highlight=False, soft_wrap=True, markup=False)  # names come from YAMLs
        self.console.file.flush()


@contextmanager
def progress_display(console: Console) -> Iterator[ProgressHook]:
    """A progress hook: rich bars on a terminal, :class:`ProgressLines` otherwise."""
    if not console.is_terminal:
        yield ProgressLines(console)
        return
    from rich.markup import escape
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    columns = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn()]
    with Progress(*columns, console=console, transient=False) as bars:
        tasks: dict[str, int] = {}

        def hook(name: str, done: int, total: int) -> None:
            if name not in tasks:
                tasks[name] = bars.add_task(escape(name), total=total)  # "[...]" is not markup
            bars.update(tasks[name], completed=done)

        yield hook
