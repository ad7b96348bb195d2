"""Exponential backoff with jitter, so reconnect loops never spin hot."""
from __future__ import annotations

import random
from typing import Optional


class Backoff:
    def __init__(self, initial: float = 0.2, maximum: float = 10.0, factor: float = 2.0,
                 rng: Optional[random.Random] = None) -> None:
        self.initial, self.maximum, self.factor = initial, maximum, factor
        self._rng = rng or random.Random()
        self._next = initial

    def next(self) -> float:
        """The next delay: grows from `initial` to `maximum`, with ±25 % jitter."""
        delay = self._next
        self._next = min(self.maximum, self._next * self.factor)
        return delay * self._rng.uniform(0.75, 1.25)

    def reset(self) -> None:
        self._next = self.initial
