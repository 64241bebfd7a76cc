"""Waiting with a deadline, on the clock passed in: the one poll loop healer has."""

from __future__ import annotations

from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    from collections.abc import Callable

    from healer.clock import Clock

T = TypeVar("T")


def until(check: Callable[[], T | None], seconds: float, clock: Clock, every: float) -> T | None:
    """Call ``check`` until it returns a value other than None, and return that value.

    ``check`` is called at once, then every ``every`` seconds; once ``seconds`` have passed
    it is called one last time, and None means the deadline passed without an answer. No
    sleep overshoots the deadline.
    """
    deadline = clock.monotonic() + seconds
    while True:
        if (answer := check()) is not None:
            return answer
        left = deadline - clock.monotonic()
        if left <= 0:
            return None
        clock.sleep(min(every, left))
