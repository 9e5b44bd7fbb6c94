"""The audit viewer's web application: read-only pages over one release (Starlette + Jinja2).

Why these choices:
- Every page is rendered on the server from templates with autoescaping on, and the card's Markdown
  goes through markdown-it with raw HTML off: captions, labels and reports are untrusted text and are
  shown as text. The pages carry no script at all, and the Content-Security-Policy says so.
- Only GET and HEAD exist; files come only through ``ReleaseView`` (files the release lists).
- Requests must name this machine in their Host header, so a web page elsewhere cannot reach the
  viewer through DNS rebinding.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import quote

import jinja2
from markdown_it import MarkdownIt
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route

from medcurate.release.changes import removed_samples
from medcurate.viewer.release_view import MEDIA_TYPES, SEARCH_FIELDS, ReleaseView
from medcurate.viewer.sample_page import display_size, run_times, texts, timeline

PAGE_SIZE = 100
SECURITY_HEADERS = {
    "content-security-policy": (
        "default-src 'none'; img-src 'self'; style-src 'self'; form-action 'self'; "
        "base-uri 'none'; frame-ancestors 'none'"
    ),
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "x-frame-options": "DENY",
    "cache-control": "no-store",
}
LOCAL_HOSTS = ["127.0.0.1", "localhost", "::1", "[::1]"]


def _templates() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("medcurate.viewer", "templates"),
        autoescape=True,
        undefined=jinja2.ChainableUndefined,  # a record of an older schema lacks fields: show them empty
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["url"] = lambda value: quote(str(value), safe="")
    env.filters["score"] = lambda value: "" if value is None else f"{value:.4g}"
    return env


def card_html(view: ReleaseView) -> str | None:
    """The release card as HTML: raw HTML in the Markdown stays text, and an image is kept only if it
    names a file of the release (then it is drawn from ``/files/``). Headings move one level down, under
    the page's own title."""
    text = view.read_text("card.md")
    if text is None:
        return None
    md = MarkdownIt("js-default")
    tokens = md.parse(text)
    for token in tokens:
        if token.type in ("heading_open", "heading_close"):  # the page has its own h1
            token.tag = f"h{min(6, int(token.tag[1]) + 1)}"
        for child in token.children or []:
            if child.type == "image":
                src = str(child.attrGet("src") or "")
                if view.file_path(src) is None:
                    child.attrSet("src", "")
                    child.type = "text"
                    child.content = f"[image not in this release: {src}]"
                else:
                    child.attrSet("src", "/files/" + quote(src))
    return md.renderer.render(tokens, md.options, {})


def _header(response: Response) -> Response:
    for name, value in SECURITY_HEADERS.items():
        response.headers[name] = value
    return response


def create_app(view: ReleaseView, lake_root: Path | None = None, hosts: Sequence[str] = ()) -> Starlette:
    """The viewer over ``view``; ``lake_root`` (the lake the release sits in) lets a sample page check
    its source's bytes again; ``hosts`` are Host header names accepted besides this machine's."""
    env = _templates()
    card = card_html(view)
    changes = json.loads(view.read_text("changes.json") or "null")
    base = {
        "release": view.info,
        "fields": SEARCH_FIELDS,
    }

    def page(name: str, status: int = 200, **values: Any) -> HTMLResponse:
        html = env.get_template(name).render(**base, **values)
        return _header(HTMLResponse(html, status_code=status))

    removed = removed_samples(changes)  # samples of the parent this release no longer has, with why
    why_removed = {item["key"]: item["reason"] for item in removed}

    def release_page(request: Request) -> Response:
        return page(
            "release.html",
            card=card,
            examples=view.examples,
            changes=changes,
            removed=removed[:PAGE_SIZE],
            removed_total=len(removed),
            files=sorted(view.files),
        )

    def search_page(request: Request) -> Response:
        query = request.query_params.get("q", "")
        field = request.query_params.get("field", "any")
        if field not in SEARCH_FIELDS:
            raise HTTPException(400, f"unknown search field {field!r}")
        try:
            offset = max(0, int(request.query_params.get("offset", "0")))
        except ValueError as exc:
            raise HTTPException(400, "offset must be a whole number") from exc
        if field in ("any", "id") and view.row(query.strip()) is not None:
            return _header(RedirectResponse(f"/sample/{quote(query.strip(), safe='')}", status_code=303))
        total, hits = view.search(query, field, PAGE_SIZE, offset)
        gone = why_removed.get(query.strip()) if field in ("any", "id") else None
        return page(
            "search.html",
            query=query,
            field=field,
            total=total,
            hits=hits,
            offset=offset,
            page_size=PAGE_SIZE,
            removed=gone,
        )

    def sample_page(request: Request) -> Response:
        key = request.path_params["key"]
        row = view.row(key)
        record = view.record(row) if row else None
        if row is None or record is None:
            raise HTTPException(404, f"no sample {key} in this release")
        image_ext = view.image_ext(row)
        source_check = None
        if request.query_params.get("check") == "source" and lake_root is not None:
            from medcurate.audit import check_source
            from medcurate.lake.store import Lake

            source_check = check_source(Lake(str(lake_root)), record)
        return page(
            "sample.html",
            key=key,
            row=row,
            record=record,
            image_ext=image_ext,
            size=display_size(row.get("width"), row.get("height")),
            texts=texts(record),
            events=timeline(record),
            run_times=run_times(lake_root, {str(e.get("run_id")) for e in record.get("lineage") or []}),
            source_check=source_check,
            can_check=lake_root is not None,
            record_json=json.dumps(record, indent=2, sort_keys=True, ensure_ascii=False),
        )

    def sample_image(request: Request) -> Response:
        key = request.path_params["key"]
        row = view.row(key)
        ext = view.image_ext(row) if row else None
        data = view.member(row, ext) if ext else None
        if data is None:
            raise HTTPException(404, f"no image for sample {key} in this release")
        return _header(Response(data, media_type=MEDIA_TYPES[ext]))

    def release_file(request: Request) -> Response:
        name = request.path_params["name"]
        path = view.file_path(name)
        if path is None:
            raise HTTPException(404, "not a file of this release")
        media = MEDIA_TYPES.get(name.rsplit(".", 1)[-1], "application/octet-stream")
        response = Response(path.read_bytes(), media_type=media)
        if media == "application/octet-stream":
            response.headers["content-disposition"] = f'attachment; filename="{quote(Path(name).name)}"'
        return _header(response)

    def stylesheet(request: Request) -> Response:
        css = resources.files("medcurate.viewer").joinpath("static/viewer.css").read_text()
        return _header(Response(css, media_type="text/css"))

    async def error_page(request: Request, exc: HTTPException) -> Response:
        return page("error.html", status=exc.status_code, status_code=exc.status_code, message=exc.detail)

    routes = [
        Route("/", release_page, methods=["GET", "HEAD"]),
        Route("/search", search_page, methods=["GET", "HEAD"]),
        Route("/sample/{key}", sample_page, methods=["GET", "HEAD"]),
        Route("/sample/{key}/image", sample_image, methods=["GET", "HEAD"]),
        Route("/files/{name:path}", release_file, methods=["GET", "HEAD"]),
        Route("/static/viewer.css", stylesheet, methods=["GET", "HEAD"]),
    ]
    middleware = [Middleware(TrustedHostMiddleware, allowed_hosts=[*LOCAL_HOSTS, *hosts])]
    return Starlette(routes=routes, middleware=middleware, exception_handlers={HTTPException: error_page})
