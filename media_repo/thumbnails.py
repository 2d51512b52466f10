"""Thumbnails with Pillow (spec v1.19 "Content repository", "Thumbnails"), run on the media thread pool.

Only JPEG, PNG, GIF and WebP are decoded (Pillow is told so: no other decoder can be reached by a crafted file);
never SVG. The pixel count is read from the header and checked against ``max_image_pixels`` before any pixel
is decoded (decompression bombs). JPEG sources give JPEG thumbnails, the others PNG (keeps transparency).
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass

from PIL import Image, ImageOps

PILLOW_FORMATS = ("JPEG", "PNG", "GIF", "WEBP")
JPEG_QUALITY = 80


class NotThumbnailable(Exception):
    """The file is not an image we thumbnail (unknown format, too many pixels, undecodable)."""


@dataclass(frozen=True)
class Rendered:
    width: int
    height: int
    media_type: str
    length: int


def scaled_size(src_w: int, src_h: int, width: int, height: int) -> tuple[int, int]:
    """Fit within width x height, keeping the aspect ratio, never enlarging."""
    if src_w <= width and src_h <= height:
        return src_w, src_h
    ratio = min(width / src_w, height / src_h)
    return max(1, round(src_w * ratio)), max(1, round(src_h * ratio))


def _open(path: str, max_pixels: int) -> Image.Image:
    try:
        image = Image.open(path, formats=PILLOW_FORMATS)
    except Exception as e:  # Pillow raises many kinds for an unreadable file
        raise NotThumbnailable(f"not a supported image: {e.__class__.__name__}") from None
    w, h = image.size
    if w * h > max_pixels:
        image.close()
        raise NotThumbnailable(f"image of {w}x{h} pixels is over max_image_pixels")
    return image


def render(src: str, dest_dir: str, width: int, height: int, method: str, max_pixels: int) -> tuple[str, Rendered]:
    """Write a thumbnail of ``src`` to a temporary file in ``dest_dir``, flushed to disk, for the caller to
    rename into place; returns (its path, what it is). ``method`` is ``crop`` or ``scale``."""
    with _open(src, max_pixels) as image:
        out_type = "image/jpeg" if image.format == "JPEG" else "image/png"
        try:
            image.seek(0)
            image = ImageOps.exif_transpose(image)
            if method == "crop":
                w, h = min(width, image.width), min(height, image.height)
                thumb = ImageOps.fit(image, (w, h), Image.Resampling.LANCZOS)
            else:
                thumb = image.resize(scaled_size(image.width, image.height, width, height), Image.Resampling.LANCZOS)
        except (OSError, ValueError, SyntaxError) as e:
            raise NotThumbnailable(f"undecodable image: {e}") from None
        if out_type == "image/jpeg":
            thumb = thumb.convert("RGB")
        elif thumb.mode not in ("RGB", "RGBA", "L", "LA"):
            thumb = thumb.convert("RGBA")
        os.makedirs(dest_dir, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=dest_dir, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as f:
                if out_type == "image/jpeg":
                    thumb.save(f, "JPEG", quality=JPEG_QUALITY)
                else:
                    thumb.save(f, "PNG", optimize=False)
                f.flush()
                os.fsync(f.fileno())  # complete on disk before the caller renames it into place
        except BaseException:
            os.unlink(tmp)
            raise
        return tmp, Rendered(thumb.width, thumb.height, out_type, os.path.getsize(tmp))
