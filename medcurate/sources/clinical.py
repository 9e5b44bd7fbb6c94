"""What the clinical sources (DICOM, NIfTI) share: a required pseudonym key and pseudonymous file uris.

File paths of clinical inputs often carry names and record numbers, so a clinical file is named in
records, catalogue and releases only as ``<kind>://<dataset>/<keyed pseudonym of its path>``; the
real path goes to the lake's access-restricted path map (``medcurate reveal`` reads it back).
Error messages must never quote a path or a header value for the same reason.
"""

from __future__ import annotations

from medcurate.hashing import pseudonym
from medcurate.sources.base import SourceContext


def require_key(kind: str, name: str, ctx: SourceContext) -> str:
    """The pseudonym key, or a ValueError that says where to set one (never a default in code)."""
    if not ctx.pseudonym_key:
        raise ValueError(
            f"source {name!r} ({kind}): clinical inputs need a pseudonym key for patient, study and path "
            "pseudonyms; set MEDCURATE_PSEUDONYM_KEY (or pseudonym_key in the pipeline config)"
        )
    return ctx.pseudonym_key


def pseudonymous_uri(kind: str, dataset: str, key: str, real_location: str) -> str:
    """The name a clinical file goes by everywhere outside the restricted path map."""
    return f"{kind}://{dataset}/{pseudonym(key, 'path', real_location)}"
