"""QR codes as inline SVG (segno): no JavaScript, no external service, works offline.

segno is pure Python: a link's code takes ~17 ms, a WireGuard file's ~28 ms here. The
same text always gives the same code, so each worker keeps the last QR_CACHE_SIZE codes
in memory (never in Redis: a QR code is its secret in another form), and a page that is
shown again costs a dictionary lookup per code.
"""

from __future__ import annotations

import functools

import segno
from django.utils.safestring import SafeString, mark_safe

QR_CACHE_SIZE = 512  # ~5 KB of SVG each: a few MB per worker at most


@functools.lru_cache(maxsize=QR_CACHE_SIZE)
def _svg(data: str, title: str) -> str:
    code = segno.make(data, error="m", micro=False, boost_error=False)
    return str(
        code.svg_inline(scale=4, border=4, dark="#000", light="#fff", omitsize=True, title=title or None, svgclass="qr")
    )


def qr_svg(data: str, *, title: str = "") -> SafeString:
    """An `<svg>` element of `data`, sized by CSS (no width/height), dark on white.

    Error correction M (15%) keeps a long link scannable from a screen; segno raises
    DataOverflowError for data no QR version holds.
    """
    try:
        svg = _svg(data, title)
    except segno.DataOverflowError:
        # More than a QR code holds (~2 kB at level M): the text beside it still works.
        return SafeString('<p class="muted">Too long for a QR code: copy the text instead.</p>')
    # segno builds the markup itself and escapes the title: safe to insert as it is.
    return mark_safe(svg)  # noqa: S308  # nosec B308 B703
