"""The PMC Open Access source: one input per article, one sample per figure with a resolvable graphic.

Listing reads only the mirror's index and file stats (hashing files the catalogue does not know), so
a nightly run over an unchanged mirror opens no package. An input's key covers the article's bytes
and what the index says about it (license, Last Updated, retraction), so a changed license or update
date makes it a new input whose records supersede the old ones; an article that leaves the index is
no longer listed, so the next release drops it (the release's ``changes.json`` says why).

Reading is all or nothing per article: a hostile or broken package or XML becomes one quarantined
record with the reason, and a figure whose graphic is missing becomes a quarantined record of its own
while the article's other figures go on.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pyarrow.fs as pafs

from medcurate.hashing import sha256_bytes, sha256_json, sha256_stream
from medcurate.schemas.record import FILTERED, QUARANTINED, new_record, text_authors
from medcurate.sources.base import INGEST_DETAILS, InputItem, Source
from medcurate.sources.pmc.archive import XML_EXTENSIONS, ArchiveError, Limits, read_package
from medcurate.sources.pmc.graphics import Rendition, figure_renditions, group_by_stem
from medcurate.sources.pmc.jats import Article, Figure, JatsError, normalized_license, parse_article
from medcurate.sources.pmc.layouts import ArticleFiles, Mirror, list_articles
from medcurate.sources.pmc.licenses import most_restrictive

PARAMS = {"layout", "file_list", "max_members", "max_member_bytes", "max_package_bytes", "max_xml_bytes"}


class PmcSource(Source):
    """Articles of a PMC OA mirror (classic packages, cloud per-file layout, or a folder of packages)."""

    kind = "pmc"
    version = "1"
    known_params = frozenset(PARAMS)

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.layout = self.params.get("layout", "auto")
        self.limits = Limits(
            max_members=int(self.params.get("max_members", Limits.max_members)),
            max_member_bytes=int(self.params.get("max_member_bytes", Limits.max_member_bytes)),
            max_total_bytes=int(self.params.get("max_package_bytes", Limits.max_total_bytes)),
        )
        self.max_xml_bytes = int(self.params.get("max_xml_bytes", 64 * 2**20))
        self._mirror: Mirror | None = None

    @property
    def mirror(self) -> Mirror:
        if self._mirror is None:
            self._mirror = Mirror(self.uri)
        return self._mirror

    # -- listing ---------------------------------------------------------------------------------

    def _stat_hash(self, info: pafs.FileInfo) -> str:
        known = self.ctx.stat_cache(info.path, info.size, info.mtime_ns)
        if known is not None:
            return known
        with self.mirror.fs.open_input_stream(info.path, compression=None) as stream:
            return sha256_stream(stream)

    def _item(self, article: ArticleFiles) -> InputItem:
        # Where the mirror or its list lives is not part of what an article is.
        listing = {k: v for k, v in article.listing.items() if k not in ("manifest_uri", "manifest_line")}
        payload = {"pmcid": article.pmcid, "packaged": article.packaged, "listing": article.listing}
        if article.error:
            key = sha256_json(["error", article.uri, article.error, listing])
            return InputItem(self.name, key, article.uri, payload=payload, error=article.error)
        infos = self.mirror.fs.get_file_info(list(article.files))
        problem = None
        for info in infos:
            if info.type != pafs.FileType.File:
                problem = f"input_missing: {self.mirror.display_uri(info.path)} is listed but not a file"
            elif self.mirror.escapes(info.path):
                problem = f"unsafe_path: {self.mirror.display_uri(info.path)} resolves outside the mirror"
            if problem:
                key = sha256_json(["error", article.uri, problem, listing])
                return InputItem(self.name, key, article.uri, payload=payload, error=problem)
        files = [
            {"path": info.path, "size": info.size, "mtime_ns": info.mtime_ns, "sha256": self._stat_hash(info)}
            for info in infos
        ]
        payload["files"] = files
        main = files[0]
        # The article's identity: its bytes (all files) and the index facts that change its samples.
        key = sha256_json([[f["sha256"] for f in files], listing])
        return InputItem(
            self.name,
            key,
            article.uri,
            sha256=main["sha256"],
            size=main["size"],
            mtime_ns=main["mtime_ns"],
            payload=payload,
        )

    def list_inputs(self) -> Iterator[InputItem]:
        for article in list_articles(self.mirror, self.layout, self.params.get("file_list")):
            yield self._item(article)

    # -- reading ---------------------------------------------------------------------------------

    def _source_fields(self, item: InputItem) -> dict[str, Any]:
        listing = item.payload.get("listing", {})
        return {
            "manifest_uri": listing.get("manifest_uri"),
            "manifest_line": listing.get("manifest_line"),
            "citation": listing.get("citation"),
        }

    def _read_files(self, item: InputItem) -> tuple[dict[str, bytes], dict[str, str]]:
        """Member name -> bytes, and member name -> the URI it came from; raises ArchiveError."""
        files = item.payload["files"]
        if item.payload["packaged"]:
            with self.mirror.fs.open_input_stream(files[0]["path"], compression=None) as stream:
                try:
                    package = read_package(stream, self.limits)
                except ArchiveError as exc:
                    if exc.sha256 is not None and exc.sha256 != files[0]["sha256"]:
                        raise ArchiveError(
                            "input_changed", f"{item.uri} changed since it was listed"
                        ) from exc
                    raise
            if package.sha256 != files[0]["sha256"]:
                raise ArchiveError("input_changed", f"{item.uri} changed since it was listed")
            return package.kept, dict.fromkeys(package.kept, item.uri)
        kept, uris = {}, {}
        for entry in files:
            with self.mirror.fs.open_input_stream(entry["path"], compression=None) as stream:
                data = stream.read(self.limits.max_member_bytes + 1)
            if len(data) > self.limits.max_member_bytes:
                raise ArchiveError("archive_bomb", f"{entry['path']} is larger than the member cap")
            if sha256_bytes(data) != entry["sha256"]:
                raise ArchiveError("input_changed", f"{entry['path']} changed since it was listed")
            name = self.mirror.relative(entry["path"])
            kept[name], uris[name] = data, self.mirror.display_uri(entry["path"])
        return kept, uris

    @staticmethod
    def _article_xml(kept: dict[str, bytes]) -> tuple[str, bytes]:
        names = sorted(n for n in kept if n.lower().endswith(".nxml")) or sorted(
            n for n in kept if n.lower().endswith(XML_EXTENSIONS)
        )
        if not names:
            raise ArchiveError("xml_missing", "no .nxml or .xml article file in the input")
        if len(names) > 1:
            raise ArchiveError("xml_ambiguous", f"several article files: {names[:4]}")
        return names[0], kept[names[0]]

    def _license(self, article: Article, listing: dict[str, Any]) -> tuple[str | None, str | None, dict]:
        """The most restrictive of what the article states and what the index states; both recorded."""
        listed, _ = normalized_license(listing.get("license"))
        chosen = most_restrictive(article.license, listed)
        url = article.license_url if chosen == article.license else None
        evidence = {"article": article.license, "file_list": listed, "chosen": chosen}
        return chosen, url, evidence

    def details(self, item: InputItem) -> dict[str, Any] | None:
        """Facts for the ingest lineage event: index facts and the inputs this one supersedes."""
        listing = item.payload.get("listing") or {}
        names = {
            "last_updated": "last_updated",
            "license": "listed_license",
            "retracted": "retracted",
            "group": "group",
        }
        facts: dict[str, Any] = {new: listing[old] for old, new in names.items() if old in listing}
        older = [key for key in self.ctx.history(item.uri) if key != item.key]
        if older:
            facts["supersedes_inputs"] = older
        return facts or None

    def read(self, item: InputItem) -> list[dict[str, Any]]:
        fields = self._source_fields(item)
        if item.error:
            return [self.quarantined_record(item, item.error, **fields)]
        listing = item.payload.get("listing") or {}
        if listing.get("retracted"):
            reason = (
                f"retracted: {item.payload.get('pmcid') or item.uri} is marked retracted in the file list"
            )
            record = self.quarantined_record(item, reason, **fields)
            record["status"] = FILTERED  # readable, but not wanted: filtered, not quarantined
            return [record]
        try:
            kept, uris = self._read_files(item)
            xml_name, xml = self._article_xml(kept)
            article = parse_article(xml, max_bytes=self.max_xml_bytes)
        except (ArchiveError, JatsError) as exc:
            return [self.quarantined_record(item, f"{exc.code}: {exc.detail}", **fields)]
        license_id, license_url, evidence = self._license(article, listing)
        article_fields = {
            "pmcid": article.pmcid or item.payload.get("pmcid"),
            "pmid": article.pmid or listing.get("pmid"),
            "doi": article.doi,
            "title": article.title,
            "journal": article.journal,
            "year": article.year,
            "article_type": article.article_type,
            "keywords": list(article.keywords),
            "last_updated": listing.get("last_updated"),
        }
        citation = fields["citation"] or _citation(article)
        common = {**fields, "citation": citation, "license": license_id, "license_url": license_url}
        if not article.figures:
            return [self.quarantined_record(item, "no_figures: the article has no <fig> element", **common)]
        images = {name: data for name, data in kept.items() if name != xml_name}
        groups = group_by_stem(images)  # once per article, not once per graphic
        # Every figure's image headers in one pass before the records (see figure_renditions).
        found = figure_renditions([figure.graphics for figure in article.figures], groups)
        records = [
            self._figure_record(
                item, index, figure, images, figure_found, uris, article_fields, common, evidence
            )
            for index, (figure, figure_found) in enumerate(zip(article.figures, found, strict=True))
        ]
        return records

    def _figure_record(
        self,
        item: InputItem,
        index: int,
        figure: Figure,
        images: dict[str, bytes],
        found: list[Rendition],
        uris: dict[str, str],
        article: dict[str, Any],
        common: dict[str, Any],
        license_evidence: dict[str, Any],
    ) -> dict[str, Any]:
        figure_id = figure.id or f"fig-{index}"
        chosen = found[0] if found else None
        identity = article["pmcid"] or item.uri
        figure_fields = {
            "id": figure.id,
            "label": figure.label,
            "title": figure.title,
            "graphic": figure.graphics[0] if figure.graphics else None,
            "container": figure.container,
            "compound": figure.compound,
            "panels": [{"label": p.label, "text": p.text} for p in figure.panels],
            "citing": [{"section": c.section, "text": c.text} for c in figure.citing],
        }
        text = {
            "source_caption": figure.caption,
            "citing_context": "\n".join(c.text for c in figure.citing) or None,
            "final_caption": figure.caption or None,
            "final_caption_author": "author" if figure.caption else None,
            "authors": text_authors(
                ("source_caption", "author" if figure.caption else None),
                ("citing_context", "author" if figure.citing else None),
                ("final_caption", "author" if figure.caption else None),
            ),
        }
        source = {
            "kind": self.kind,
            "dataset": self.name,
            **common,
        }
        if chosen is None:
            hrefs = ", ".join(figure.graphics) or "none"
            reason = f"graphic_missing: figure {figure_id} graphic {hrefs} has no image file in the input"
            record = new_record(
                self.sample_id(identity, figure_id, "missing"),
                status=QUARANTINED,
                status_reason=reason,
                source={**source, "uri": item.uri, "sha256": item.sha256, "size": item.size},
            )
        else:
            data = images[chosen.name]
            packaged = item.payload["packaged"]
            image_sha256 = sha256_bytes(data)  # hashed once, for the id and the record
            record = new_record(
                self.sample_id(identity, figure_id, image_sha256),
                source={
                    **source,
                    "uri": uris[chosen.name],
                    "member": chosen.name if packaged else None,
                    # A per-file image was verified against its listed sha256 in _read_files.
                    "sha256": item.sha256 if packaged else image_sha256,
                    "size": item.size if packaged else len(data),
                },
                image={"bytes": data, "sha256": image_sha256},
            )
        record["article"] = article
        record["figure"] = figure_fields
        record["text"] = text
        record[INGEST_DETAILS] = {
            "license": license_evidence,
            "renditions": [f"{r.name} ({r.width}x{r.height}, {r.size} B)" for r in found],
        }
        return record


def _citation(article: Article) -> str | None:
    parts = [p for p in (article.journal, str(article.year) if article.year else None) if p]
    ids = [p for p in (article.doi and f"doi:{article.doi}", article.pmcid) if p]
    text = ". ".join(parts)
    return "; ".join(p for p in (text, *ids) if p) or None
