"""Stable hashing: canonical JSON, file digests and keyed pseudonyms.

Determinism of ids, cache keys and release hashes rests on these helpers, so every hash in the
project goes through them.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import IO, Any

CHUNK = 1 << 20


def canonical_json(obj: Any) -> str:
    """JSON with sorted keys and no insignificant whitespace: equal values give equal text."""
    return json.dumps(obj, sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=str)


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_text(text: str) -> str:
    return sha256_bytes(text.encode("utf-8"))


def sha256_json(obj: Any) -> str:
    return sha256_text(canonical_json(obj))


def sha256_stream(stream: IO[bytes]) -> str:
    digest = hashlib.sha256()
    while chunk := stream.read(CHUNK):
        digest.update(chunk)
    return digest.hexdigest()


def pseudonym(key: str, namespace: str, identifier: str) -> str:
    """Keyed HMAC-SHA256 pseudonym: stable for one key, unlinkable to the raw id without it."""
    mac = hmac.new(key.encode("utf-8"), f"{namespace}\x1f{identifier}".encode(), hashlib.sha256)
    return mac.hexdigest()[:24]
