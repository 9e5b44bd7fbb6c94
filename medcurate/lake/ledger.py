"""The per-run ledger: every candidate sample is released, filtered or quarantined, with reasons.

The ledger must balance (candidates + derived = released + filtered + quarantined, per source, where
``derived`` counts samples a stage made from another, e.g. a model caption kept as its own sample); a
run whose ledger does not balance has lost records, and ``Ledger.check`` says so loudly.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from medcurate.schemas.record import ACTIVE, FILTERED, QUARANTINED


def reason_code(reason: str | None) -> str:
    """The code part of a reason ("decompression_bomb: 9x9 ..." -> "decompression_bomb")."""
    return (reason or "unknown").split(":", 1)[0].strip()


@dataclass
class SourceLedger:
    inputs: int = 0
    new_inputs: int = 0
    candidates: int = 0
    derived: int = 0
    released: int = 0
    filtered: Counter = field(default_factory=Counter)
    quarantined: Counter = field(default_factory=Counter)

    def count(self, status: str, reason: str | None) -> None:
        if status == ACTIVE:
            self.released += 1
        elif status == FILTERED:
            self.filtered[reason_code(reason)] += 1
        elif status == QUARANTINED:
            self.quarantined[reason_code(reason)] += 1
        else:
            raise ValueError(f"unknown status {status!r}")

    @property
    def balanced(self) -> bool:
        out = self.released + sum(self.filtered.values()) + sum(self.quarantined.values())
        return self.candidates + self.derived == out

    def as_dict(self) -> dict[str, Any]:
        return {
            "inputs": self.inputs,
            "new_inputs": self.new_inputs,
            "candidates": self.candidates,
            "derived": self.derived,
            "released": self.released,
            "filtered": dict(sorted(self.filtered.items())),
            "quarantined": dict(sorted(self.quarantined.items())),
            "balanced": self.balanced,
        }


@dataclass
class Ledger:
    run_id: str
    sources: dict[str, SourceLedger] = field(default_factory=dict)

    def source(self, name: str) -> SourceLedger:
        return self.sources.setdefault(name, SourceLedger())

    def check(self) -> None:
        broken = [name for name, src in self.sources.items() if not src.balanced]
        if broken:
            raise RuntimeError(f"ledger of run {self.run_id} does not balance for {broken}: {self.as_dict()}")

    def totals(self) -> dict[str, Any]:
        total = SourceLedger()
        for src in self.sources.values():
            total.inputs += src.inputs
            total.new_inputs += src.new_inputs
            total.candidates += src.candidates
            total.derived += src.derived
            total.released += src.released
            total.filtered.update(src.filtered)
            total.quarantined.update(src.quarantined)
        return total.as_dict()

    def as_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "sources": {name: src.as_dict() for name, src in sorted(self.sources.items())},
            "totals": self.totals(),
        }
