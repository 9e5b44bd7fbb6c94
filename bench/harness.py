"""What every benchmark under bench/ shares: one fresh process per variant, its peak RSS, the table.

Each benchmark re-invokes itself (``spawn``) so a variant's imports, caches and peak memory are its
own, and prints its results as a Markdown table readable as plain text.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

#: One variant's run in its child process: (input root, cache file) -> result.
Runner = Callable[[Path, Path], dict[str, Any]]


def peak_rss_kib() -> int:
    """This process's own peak resident set in KiB: ``VmHWM``, falling back to ``ru_maxrss``.

    On Linux ``ru_maxrss`` survives ``exec``: a child starts with its parent's peak (measured: a child
    of a 300 MiB parent reports 311 MiB while its ``VmHWM`` is 11 MiB), so the parent's imports and the
    mirror generation would leak into every variant's figure. ``VmHWM`` belongs to the new address space.
    """
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def warm_page_cache(paths: list[Path]) -> int:
    """Read every input file once so no variant pays (or dodges) cold-disk reads the others do not."""
    return sum(len(path.read_bytes()) for path in paths)


def run_child(arguments: list[str], label: str) -> dict[str, Any]:
    """Run ``python ARGUMENTS`` and return the JSON object its last output line holds; exit on failure."""
    done = subprocess.run([sys.executable, *arguments], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        sys.exit(f"variant {label} failed ({done.returncode}):\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def spawn(script: str, variant: str, root: Path, cache_file: Path) -> dict[str, Any]:
    """Re-invoke this script for one variant, so its peak RSS and imports are its own."""
    return run_child([script, "--variant", variant, "--root", str(root), "--cache", str(cache_file)], variant)


def add_child_arguments(parser: argparse.ArgumentParser, variants: Mapping[str, Any], count: int) -> None:
    """The hidden arguments ``spawn`` passes to a child (and ``--variant profile`` with ``--count``)."""
    parser.add_argument("--variant", choices=sorted({*variants, "profile"}), help=argparse.SUPPRESS)
    parser.add_argument("--root", help=argparse.SUPPRESS)
    parser.add_argument("--cache", help=argparse.SUPPRESS)
    parser.add_argument("--count", type=int, default=count, help=argparse.SUPPRESS)


def run_variant(args: argparse.Namespace, runners: Mapping[str, Runner]) -> None:
    """In a child: run ``args.variant`` and print its result as one JSON line for ``spawn``."""
    print(json.dumps(runners[args.variant](Path(args.root), Path(args.cache))))


def in_work_folder(keep: Path | None, name: str, work: Callable[[Path], None]) -> None:
    """Run ``work`` on ``keep`` (created, reused between runs) or on a temporary folder ``name``."""
    if keep:
        keep.mkdir(parents=True, exist_ok=True)
        work(keep.resolve())
        return
    with tempfile.TemporaryDirectory() as tmp:
        work(Path(tmp) / name)


def print_markdown(table: list[tuple[str, ...]]) -> None:
    """A Markdown table, first column left-aligned and numbers right-aligned, readable as plain text."""
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    rule = ["-" * (w + 2) if i == 0 else "-" * (w + 1) + ":" for i, w in enumerate(widths)]
    for index, row in enumerate(table):
        pairs = enumerate(zip(row, widths, strict=True))
        cells = [c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in pairs]
        print("| " + " | ".join(cells) + " |")
        if index == 0:
            print("|" + "|".join(rule) + "|")
