"""coflow's benchmarks: each SPEC §8 target measured against a peer, in one run, in one table.

``python -m bench --quick`` (from the repository root) prints the table.
Each benchmark line is one module with a ``measure(...)`` function returning
:class:`Row` values; ``bench.__main__`` only picks the sizes and prints.

How the figures are taken, so that the ratios are fair:

- coflow and its peer run alternately in the same process, ``repeats`` rounds,
  and the best (smallest) time of each is kept: the best time is the one least
  disturbed by the rest of the machine.
- Timing is ``time.perf_counter``; every timed body times itself, so setup that
  is not part of the model (building input data, stopping flows afterwards) is
  left out on both sides alike.
- The garbage collector stays enabled (allocation is part of the cost), but a
  full collection runs before every timed body, so no side pays for garbage
  left by the other.
- ``ratio`` is always coflow's figure divided by the peer's, in the line's unit;
  each target is stated in the same terms.
"""

from __future__ import annotations

import gc
import math
import os
import platform
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from importlib import metadata

__all__ = ["Row", "Target", "at_least", "at_most", "best_of", "format_table", "machine_summary"]


@dataclass(frozen=True)
class Target:
    """A bound on a row's ratio (``on="ratio"``) or on coflow's own figure (``on="coflow"``)."""

    on: str  # "ratio" | "coflow"
    bound: float
    upper: bool  # True: value <= bound is met; False: value >= bound is met
    text: str

    def miss_factor(self, value: float) -> float:
        """How far ``value`` is from the bound, as a factor >= 1 (1.0 means met exactly)."""
        if self.upper:
            return value / self.bound
        return self.bound / value if value > 0 else math.inf


def at_most(bound: float, text: str, *, on: str = "ratio") -> Target:
    return Target(on, bound, True, text)


def at_least(bound: float, text: str, *, on: str = "ratio") -> Target:
    return Target(on, bound, False, text)


@dataclass(frozen=True)
class Row:
    """One line of the table: coflow's figure, its peer's, and the SPEC target.

    A figure is ``None`` when it could not be measured (its backend or peer is not installed).
    """

    line: str
    unit: str
    coflow: float | None
    peer: str
    peer_value: float | None
    target: Target

    @property
    def ratio(self) -> float | None:
        if self.coflow is None or self.peer_value is None or self.peer_value == 0:
            return None
        return self.coflow / self.peer_value

    @property
    def met(self) -> bool | None:
        """Whether the target is met; ``None`` when it needs a peer figure that is missing."""
        value = self.coflow if self.target.on == "coflow" else self.ratio
        if value is None:
            return None
        return value <= self.target.bound if self.target.upper else value >= self.target.bound

    def verdict(self) -> str:
        met = self.met
        if met is None:
            return "n/a"
        if met:
            return "yes"
        value = self.coflow if self.target.on == "coflow" else self.ratio
        assert value is not None
        return f"NO ({self.target.miss_factor(value):.2f}x off)"


def best_of(repeats: int, contenders: Mapping[str, Callable[[], float]]) -> dict[str, float]:
    """Run each contender once per round, in turn, for ``repeats`` rounds; keep each one's best.

    A contender runs its model and returns the seconds it took (it times only the
    part that is being compared).
    """
    best = dict.fromkeys(contenders, math.inf)
    for _ in range(max(1, repeats)):
        for name, contender in contenders.items():
            gc.collect()
            best[name] = min(best[name], contender())
    return best


def _format_value(value: float | None, unit: str) -> str:
    if value is None:
        return "n/a"
    if unit.startswith("µs"):
        return f"{value:,.2f}"
    return f"{value:,.0f}"


def format_table(rows: list[Row]) -> str:
    header = ("line", "unit", "coflow", "peer", "peer value", "ratio", "target", "met")
    cells = [header]
    for row in rows:
        ratio = row.ratio
        cells.append((
            row.line,
            row.unit,
            _format_value(row.coflow, row.unit),
            row.peer,
            _format_value(row.peer_value, row.unit) if row.peer != "—" else "—",
            f"{ratio:.2f}x" if ratio is not None else "—",
            row.target.text,
            row.verdict(),
        ))
    widths = [max(len(line[i]) for line in cells) for i in range(len(header))]
    numeric = {2, 4, 5}

    def render(line: tuple[str, ...]) -> str:
        padded = (
            cell.rjust(widths[i]) if i in numeric else cell.ljust(widths[i])
            for i, cell in enumerate(line)
        )
        return "  ".join(padded).rstrip()

    rule = "  ".join("-" * width for width in widths)
    return "\n".join([render(cells[0]), rule, *(render(line) for line in cells[1:])])


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for text in cpuinfo:
                if text.startswith("model name"):
                    return text.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _version(distribution: str) -> str:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return "not installed"


def machine_summary() -> str:
    python = f"{platform.python_implementation()} {platform.python_version()} ({sys.executable})"
    machine = f"{_cpu_model()}, {os.cpu_count()} CPUs, {platform.platform()}"
    packages = ("coflow", "simpy", "tenacity", "gevent")
    versions = ", ".join(f"{name} {_version(name)}" for name in packages)
    return f"Python:   {python}\nMachine:  {machine}\nPackages: {versions}"
