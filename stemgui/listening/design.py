"""Presentation order of a listening test: random per listener and trial, reproducible from the test's seed.

Each listener meets the trials in their own shuffled order, and within a MUSHRA trial the conditions (hidden
reference, anchors, systems) behind the buttons A, B, C... in their own shuffled order. The generator is
seeded from sha256(seed, listener, what is shuffled), never from Python's salted `hash`, so the same test and
name give the same order on any machine and after a crash; different listeners get independent orders.
"""

from __future__ import annotations

import hashlib
import random
import string
from typing import Sequence, TypeVar

_T = TypeVar("_T")


def _rng(seed: int, listener: str, what: str) -> random.Random:
    digest = hashlib.sha256(f"{seed}\x00{listener.strip()}\x00{what}".encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


def shuffled(items: Sequence[_T], seed: int, listener: str, what: str) -> list[_T]:
    out = list(items)
    _rng(seed, listener, what).shuffle(out)
    return out


def trial_order(trial_ids: Sequence[str], seed: int, listener: str) -> list[str]:
    """The order `listener` meets the trials in."""
    return shuffled(trial_ids, seed, listener, "trials")


def condition_order(condition_ids: Sequence[str], seed: int, listener: str, trial_id: str) -> list[str]:
    """The conditions of one trial in the order of the buttons A, B, C..."""
    return shuffled(condition_ids, seed, listener, f"conditions:{trial_id}")


def labels(count: int) -> list[str]:
    """A, B, ..., Z, AA, AB, ...: the blind names of the buttons."""
    out = []
    for i in range(count):
        name, n = "", i
        while True:
            name = string.ascii_uppercase[n % 26] + name
            n = n // 26 - 1
            if n < 0:
                break
        out.append(name)
    return out
