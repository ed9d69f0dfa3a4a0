"""Example Python tools (the `analyst` preset's): plain functions, typed and documented, nothing else.

Any importable function can be a tool: name it in the teams file as `package.module:function`. Its
JSON schema comes from the signature, the type hints and the docstring (`Annotated[T, "what it is"]`
describes a parameter); the return value reaches the model as text (JSON for anything but a string).
"""

from __future__ import annotations

import statistics
from typing import Annotated


def summary_stats(numbers: Annotated[list[float], "the values to summarize"]) -> dict[str, float | int]:
    """Summary statistics of a list of numbers: count, mean, median, standard deviation, min and max."""
    if not numbers:
        raise ValueError("give at least one number")
    return {
        "count": len(numbers),
        "mean": statistics.fmean(numbers),
        "median": statistics.median(numbers),
        "stdev": statistics.stdev(numbers) if len(numbers) > 1 else 0.0,
        "min": min(numbers),
        "max": max(numbers),
    }


def percent_change(
    start: Annotated[float, "the value before"], end: Annotated[float, "the value after"]
) -> float:
    """The change from `start` to `end` in percent (read-only arithmetic: it needs no approval)."""
    if start == 0:
        raise ValueError("the change from 0 is not a percentage")
    return round((end - start) / abs(start) * 100, 4)
