"""Find, version and verify releases in a lake.

A release folder counts only once its ``release.json`` exists; it is written last, after every shard,
the manifest, the card and the checksums, and the folder is moved into place in one rename.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from medcurate.lake.store import Lake

CHECKSUMS = "checksums.sha256"


def parse_version(version: str) -> tuple[int, int, int]:
    parts = version.split(".")
    if len(parts) != 3 or not all(p.isdigit() for p in parts):
        raise ValueError(f"release version {version!r} is not semantic (MAJOR.MINOR.PATCH)")
    major, minor, patch = (int(p) for p in parts)
    return major, minor, patch


def bump(version: str, part: str) -> str:
    major, minor, patch = parse_version(version)
    if part == "major":
        return f"{major + 1}.0.0"
    if part == "minor":
        return f"{major}.{minor + 1}.0"
    if part == "patch":
        return f"{major}.{minor}.{patch + 1}"
    raise ValueError(f"unknown version bump {part!r}; use major, minor or patch")


@dataclass(frozen=True)
class ReleaseRef:
    name: str
    version: str
    path: str  # lake-relative
    info: dict[str, Any]

    @property
    def content_hash(self) -> str:
        return self.info["content_hash"]

    def summary(self, lake: Lake) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "path": lake.uri(self.path).removeprefix("file://"),
            "samples": self.info["sample_count"],
            "content_hash": self.content_hash,
            "parent": (self.info.get("parent") or {}).get("version"),
        }


def list_releases(lake: Lake, name: str | None = None) -> list[ReleaseRef]:
    """Complete releases, by name then semantic version."""
    found = []
    for release_name in lake.listdir("releases"):
        if release_name.startswith("_") or (name and release_name != name):
            continue
        for version in lake.listdir("releases", release_name):
            rel = f"releases/{release_name}/{version}"
            if version.startswith("_") or not lake.exists(rel, "release.json"):
                continue
            found.append(ReleaseRef(release_name, version, rel, lake.read_json(f"{rel}/release.json")))
    return sorted(found, key=lambda r: (r.name, parse_version(r.version)))


def lake_of_release(folder: Path) -> Path | None:
    """The lake a release folder sits in (``<lake>/releases/<name>/<version>``), if it does: its runs
    hold the ledger and exclusions behind the release."""
    folder = folder.resolve()
    return folder.parents[2] if len(folder.parents) > 2 and folder.parents[1].name == "releases" else None


def latest_release(lake: Lake, name: str) -> ReleaseRef | None:
    releases = list_releases(lake, name)
    return releases[-1] if releases else None


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        while chunk := stream.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def write_checksums(folder: Path) -> None:
    """``sha256sum``-compatible list of every file in the release except the list itself."""
    lines = [
        f"{file_sha256(path)}  {path.relative_to(folder).as_posix()}"
        for path in sorted(folder.rglob("*"))
        if path.is_file() and path.name != CHECKSUMS
    ]
    (folder / CHECKSUMS).write_text("\n".join(lines) + "\n")


def content_hash(shard_digests: list[tuple[str, str]]) -> str:
    """The release hash: what training reads (the shards, in order), not when or where it was built."""
    return hashlib.sha256(
        "".join(f"{name} {digest}\n" for name, digest in shard_digests).encode()
    ).hexdigest()


def verify_release(folder: Path) -> list[str]:
    """Problems found re-checking every checksum of a release folder; empty when it is intact."""
    problems = []
    listing = folder / CHECKSUMS
    if not (folder / "release.json").is_file():
        problems.append("release.json missing: the release is incomplete")
    if not listing.is_file():
        return [*problems, f"{CHECKSUMS} missing"]
    listed = {}
    for line in listing.read_text().splitlines():
        digest, _, rel = line.partition("  ")
        listed[rel] = digest
    for rel, digest in sorted(listed.items()):
        path = folder / rel
        if not path.is_file():
            problems.append(f"{rel}: missing")
        elif file_sha256(path) != digest:
            problems.append(f"{rel}: checksum mismatch")
    for path in sorted(folder.rglob("*")):
        rel = path.relative_to(folder).as_posix()
        if path.is_file() and rel != CHECKSUMS and rel not in listed:
            problems.append(f"{rel}: not listed in {CHECKSUMS}")
    return problems
