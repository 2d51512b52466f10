"""Thumbnails with Pillow (spec v1.19 "Content repository", "Thumbnails"), run on the media thread pool.

Only JPEG, PNG, GIF and WebP are decoded (Pillow is told so: no other decoder can be reached by a crafted file);
never SVG. The pixel count is read from the header and checked against ``max_image_pixels`` before any pixel
is decoded (decompression bombs). JPEG sources give JPEG thumbnails, the others PNG (keeps transparency).

Animated thumbnails (spec v1.11+ ``animated=true``): an animated GIF or WebP source gives a thumbnail of the
same format with every frame scaled or cropped alike and the frame durations and loop count kept, when all its
frames together are within ``max_image_pixels``; any other source (or ``animated`` false, the default) gives
the static thumbnail of its first frame, as Synapse always does.

Pillow is imported at the first thumbnail, not at start-up: about 5 MB of a server's idle memory (issue 20).
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from PIL import Image

PILLOW_FORMATS = ("JPEG", "PNG", "GIF", "WEBP")
ANIMATED_TYPES = {"GIF": "image/gif", "WEBP": "image/webp"}  # formats whose animation a thumbnail keeps
JPEG_QUALITY = 80
DEFAULT_FRAME_MS = 100


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
    from PIL import Image

    try:
        image = Image.open(path, formats=PILLOW_FORMATS)
    except Exception as e:  # Pillow raises many kinds for an unreadable file
        raise NotThumbnailable(f"not a supported image: {e.__class__.__name__}") from None
    w, h = image.size
    if w * h > max_pixels:
        image.close()
        raise NotThumbnailable(f"image of {w}x{h} pixels is over max_image_pixels")
    return image


def dimensions(path: str) -> tuple[int, int] | None:
    """(width, height) read from the image's header (no pixel decoded); None for a file that is not an image of
    :data:`PILLOW_FORMATS`."""
    try:
        with _open(path, max_pixels=2**63) as image:
            return image.size
    except NotThumbnailable:
        return None


def _fit(image: Image.Image, width: int, height: int, method: str) -> Image.Image:
    from PIL import Image, ImageOps

    if method == "crop":
        w, h = min(width, image.width), min(height, image.height)
        return ImageOps.fit(image, (w, h), Image.Resampling.LANCZOS)
    return image.resize(scaled_size(image.width, image.height, width, height), Image.Resampling.LANCZOS)


def _animated(image: Image.Image, max_pixels: int) -> bool:
    """Whether ``image`` is an animation we thumbnail as one (its frames together within ``max_pixels``)."""
    return (image.format in ANIMATED_TYPES and getattr(image, "is_animated", False)
            and image.width * image.height * image.n_frames <= max_pixels)


def render(src: str, dest_dir: str, width: int, height: int, method: str, max_pixels: int,
           animated: bool = False) -> tuple[str, Rendered]:
    """Write a thumbnail of ``src`` to a temporary file in ``dest_dir``, flushed to disk, for the caller to
    rename into place; returns (its path, what it is). ``method`` is ``crop`` or ``scale``; ``animated``: keep
    the animation of an animated GIF or WebP."""
    from PIL import ImageOps, ImageSequence

    with _open(src, max_pixels) as image:
        try:
            if animated and _animated(image, max_pixels):
                out_format = image.format
                frames, durations = [], []
                for frame in ImageSequence.Iterator(image):
                    frames.append(_fit(frame.convert("RGBA"), width, height, method))
                    durations.append(frame.info.get("duration", DEFAULT_FRAME_MS))  # WebP: known once loaded
                options = {"save_all": True, "append_images": frames[1:], "duration": durations,
                           "loop": image.info.get("loop", 0)}
                if out_format == "GIF":
                    options["disposal"] = 2  # each frame drawn on a cleared canvas: they are whole frames
                thumb = frames[0]
            else:
                out_format = "JPEG" if image.format == "JPEG" else "PNG"
                image.seek(0)
                thumb = _fit(ImageOps.exif_transpose(image), width, height, method)
                if out_format == "JPEG":
                    thumb, options = thumb.convert("RGB"), {"quality": JPEG_QUALITY}
                else:
                    if thumb.mode not in ("RGB", "RGBA", "L", "LA"):
                        thumb = thumb.convert("RGBA")
                    options = {"optimize": False}
        except (OSError, ValueError, SyntaxError, EOFError) as e:
            raise NotThumbnailable(f"undecodable image: {e}") from None
        os.makedirs(dest_dir, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=dest_dir, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as f:
                thumb.save(f, out_format, **options)
                f.flush()
                os.fsync(f.fileno())  # complete on disk before the caller renames it into place
        except BaseException:
            os.unlink(tmp)
            raise
        media_type = ANIMATED_TYPES.get(out_format) or f"image/{out_format.lower()}"
        return tmp, Rendered(thumb.width, thumb.height, media_type, os.path.getsize(tmp))
