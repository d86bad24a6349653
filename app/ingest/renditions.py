"""Renditions of a stored image, made from its bytes (pure image work: no database, no storage).

`grayscale`: exactly (R+G+B)//3 per pixel as an 8-bit PNG (not Pillow's "L" conversion, which weights the
channels 0.299/0.587/0.114). `thumbnail`: a JPEG whose longest side is `size` (never enlarged). Both are
upright (EXIF orientation applied), and both refuse an image of more than `max_pixels` before decoding it.
A JPEG's thumbnail is decoded at a reduced scale (Pillow's draft mode: the decoder's DCT scaling, 1/2 to 1/8),
so a 12-megapixel photo never exists in memory at full size for its thumbnail.
"""
from __future__ import annotations

import io
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from PIL import Image, ImageMath, ImageOps

_STRIP_ROWS = 256  # grayscale works on strips of rows: its 32-bit temporaries stay small whatever the image


@dataclass(frozen=True)
class Kind:
    name: str
    content_type: str
    extension: str


GRAYSCALE = Kind("grayscale", "image/png", "png")
THUMBNAIL = Kind("thumbnail", "image/jpeg", "jpg")
KINDS = {kind.name: kind for kind in (GRAYSCALE, THUMBNAIL)}
NAMES = tuple(KINDS)


class Unrenderable(Exception):
    """The bytes cannot be made into a rendition (damaged, too many pixels, an unknown mode): why."""


def grayscale(data: bytes, *, max_pixels: int) -> bytes:
    """(R+G+B)//3 of every pixel of the upright image, as an 8-bit grayscale PNG."""
    with _opened(data, max_pixels) as image:
        rgb = _upright_rgb(image)
    out = Image.new("L", rgb.size)
    width, height = rgb.size
    for top in range(0, height, _STRIP_ROWS):
        box = (0, top, width, min(top + _STRIP_ROWS, height))
        r, g, b = rgb.crop(box).split()
        # In 32-bit integer images: the sum cannot overflow, and "/" of two integer images is integer division
        # (a floor, the values being non-negative), so each result is 0..255 exactly.
        mean = ImageMath.lambda_eval(lambda bands: (bands["r"] + bands["g"] + bands["b"]) / 3, r=r, g=g, b=b)
        out.paste(mean.convert("L"), box)
    buffer = io.BytesIO()
    out.save(buffer, "PNG", optimize=False, compress_level=6)
    return buffer.getvalue()


def thumbnail(data: bytes, size: int = 256, *, max_pixels: int, quality: int = 85) -> bytes:
    """A JPEG of the upright image, its longest side `size` (smaller images keep their size)."""
    with _opened(data, max_pixels) as image:
        if image.format == "JPEG":
            # Decode at the smallest DCT scale that still covers `size` on both sides (rotation-proof: a square).
            image.draft("RGB", (size, size))
        rgb = _upright_rgb(image)
    rgb.thumbnail((size, size), Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    rgb.save(buffer, "JPEG", quality=quality)
    return buffer.getvalue()


def render(data: bytes, *, size: int, max_pixels: int) -> dict[str, bytes]:
    """Every rendition of an image: name -> bytes."""
    return {GRAYSCALE.name: grayscale(data, max_pixels=max_pixels),
            THUMBNAIL.name: thumbnail(data, size, max_pixels=max_pixels)}


@contextmanager
def _opened(data: bytes, max_pixels: int) -> Iterator[Image.Image]:
    """The image opened, its pixel count checked from the header before any pixel is decoded; every failure of
    reading or decoding it inside the block becomes Unrenderable."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # our own limit below decides
        try:
            image = Image.open(io.BytesIO(data))
        except Exception as exc:
            raise Unrenderable(f"not a readable image ({type(exc).__name__})") from exc
        with image:
            width, height = image.size
            if width * height > max_pixels:
                raise Unrenderable(f"{width}x{height} is more than {max_pixels:,} pixels")
            try:
                yield image
            except Exception as exc:
                raise Unrenderable(f"the image could not be decoded ({type(exc).__name__}: {exc})"[:200]) from exc


def _upright_rgb(image: Image.Image) -> Image.Image:
    """The decoded image turned upright by its EXIF orientation, as 8-bit RGB whatever its mode: alpha dropped,
    palettes and CMYK converted, 16-bit samples scaled (their high byte), not clipped."""
    image.load()
    upright = ImageOps.exif_transpose(image) or image
    mode = upright.mode
    if mode.startswith("I;16") or (mode == "I" and (upright.getextrema()[1] or 0) > 255):
        upright = upright.convert("I").point(lambda v: v * (1 / 256)).convert("L")
    elif mode == "P" and "transparency" in upright.info:
        upright = upright.convert("RGBA")
    return upright if upright.mode == "RGB" else upright.convert("RGB")
