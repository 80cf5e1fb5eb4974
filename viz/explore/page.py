"""The explorer page: the HTML template, styles and script (package files beside this module)
with the payload inlined, one self-contained file that loads nothing and works from ``file://``.

Contract: :func:`explorer_html` fills ``page.html``'s ``%%TITLE%%``, ``%%CSS%%`` (``explore.css``),
``%%JS%%`` (``explore.js``) and ``%%DATA%%`` (the payload as JSON, ``<``, ``>`` and ``&``
escaped so no string can close the script); :func:`read_payload` finds the data again;
:func:`write_explorer` writes a page atomically.
"""
from __future__ import annotations

import functools
import html
import importlib.resources
import json
import re
from pathlib import Path
from typing import Any

from viz.explore.frames import Frames, load_frames
from viz.explore.payload import build_payload
from wiring.files import atomic_path

HTML_FORMATS = ("html", "htm")


@functools.cache
def _asset(name: str) -> str:
    """A package file of the page (``page.html``, ``explore.css``, ``explore.js``)."""
    return importlib.resources.files("viz.explore").joinpath(name).read_text(encoding="utf-8")


def _json_for_script(data: Any) -> str:
    text = json.dumps(data, separators=(",", ":"), ensure_ascii=True, allow_nan=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def explorer_html(frames: Frames, *, title: str | None = None) -> str:
    """The complete page for ``frames`` (one self-contained HTML string)."""
    payload = build_payload(frames)
    if title is not None:
        payload["title"] = title
    page_title = html.escape(f"wiring explorer · {payload['title']}" if payload["title"] else "wiring explorer")
    return (_asset("page.html").replace("%%TITLE%%", page_title)
            .replace("%%CSS%%", _asset("explore.css"))
            .replace("%%JS%%", _asset("explore.js"))
            .replace("%%DATA%%", _json_for_script(payload)))


def read_payload(page: str) -> dict:
    """The data dict embedded in a page written by :func:`explorer_html`."""
    match = re.search(r'<script type="application/json" id="wiring-data">(.*?)</script>', page, re.S)
    if match is None:
        raise ValueError("no wiring-data block in this page")
    return json.loads(match.group(1))


def write_explorer(source: str | Path, out: str | Path, *, title: str | None = None,
                   wiring: str | None = None) -> tuple[Path, int, int]:
    """Write the explorer page of ``source`` (run directory or GraphML file; ``wiring``
    names one of a run's several) to ``out`` atomically; returns (path, bytes, frames)."""
    frames = load_frames(source, wiring)
    page = explorer_html(frames, title=title).encode("utf-8")
    out = Path(out)
    with atomic_path(out) as tmp:
        tmp.write_bytes(page)
    return out, len(page), len(frames)
