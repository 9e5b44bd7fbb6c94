"""What every benchmark under bench/ shares: one fresh process per variant, its peak RSS, the table.

Each benchmark re-invokes itself (``spawn``) so a variant's imports, caches and peak memory are its
own, and prints its results as a Markdown table readable as plain text.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
from pathlib import Path
from typing import Any


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


def spawn(script: str, variant: str, root: Path, cache_file: Path) -> dict[str, Any]:
    """Re-invoke this script for one variant, so its peak RSS and imports are its own."""
    command = [sys.executable, script, "--variant", variant, "--root", str(root)]
    command += ["--cache", str(cache_file)]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        sys.exit(f"variant {variant} failed ({done.returncode}):\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


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
