"""Worker functions for tests/test_pool.py, in a module that imports nothing heavy: a spawned
worker imports the function's module, and this keeps its start-up short."""

from __future__ import annotations


def square_after(x: int, spin: int) -> int:
    """Work of uneven length, so the workers finish out of the tasks' order."""
    acc = 0
    for i in range(spin):
        acc = (acc + i) % 7
    return x * x + acc * 0


def fails(x: int) -> int:
    if x == 2:
        raise ValueError("task 2 refuses")
    return x
