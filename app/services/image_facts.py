"""What an uploaded file is, from its first and last bytes: the caller reads the stored bytes once (for their
MD5) and hands over the head and the tail.

Format, dimensions and EXIF come from the head (a JPEG's EXIF segment is at most 64 KiB; up to 1 MiB is kept
for files with more metadata before the frame header); truncation shows in the tail (a JPEG ends with its
EOI marker, a PNG with its IEND chunk).
"""
from __future__ import annotations

import io
import math
import warnings
from dataclasses import dataclass, field
from datetime import datetime, timezone

from PIL import ExifTags, Image, UnidentifiedImageError

MIME_TYPES = {"jpeg": "image/jpeg", "png": "image/png", "webp": "image/webp", "tiff": "image/tiff", "bmp": "image/bmp",
              "gif": "image/gif"}

LARGE_HEAD_BYTES = 1024 * 1024  # the head kept: the frame header may follow large metadata
TAIL_BYTES = 64

_GPS_IFD, _EXIF_IFD = 0x8825, 0x8769
_PNG_END = b"IEND\xaeB`\x82"


@dataclass
class Facts:
    filetype: str  # lower-case format name: jpeg, png, ...
    width: int
    height: int
    exif: dict = field(default_factory=dict)
    date_taken: datetime | None = None
    lat: float | None = None
    lon: float | None = None
    camera_make: str | None = None
    camera_model: str | None = None


class Rejected(Exception):
    """The file is not an image we can train on; the message is the reason shown in the report."""


def read_facts(head: bytes, tail: bytes, size: int, *, allowed_formats: frozenset[str], max_pixels: int) -> Facts:
    """Facts about an image from its head and tail bytes, or Rejected with a reason."""
    if size == 0:
        raise Rejected("empty file")
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            image = Image.open(io.BytesIO(head))
            image.MAX_IMAGE_PIXELS = max_pixels
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
            raise Rejected("not a recognised image" + (" (or its header is damaged)" if head[:2] == b"\xff\xd8" else "")
                           ) from exc
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            raise Rejected(f"decompression bomb: too many pixels (limit {max_pixels:,})") from exc
    fmt = (image.format or "").upper()
    if fmt not in allowed_formats:
        raise Rejected(f"rule formats: {fmt.lower() or 'unknown'} is not allowed (allowed: "
                       f"{', '.join(sorted(f.lower() for f in allowed_formats))})")
    width, height = image.size
    if width < 1 or height < 1:
        raise Rejected(f"invalid dimensions {width}x{height}")
    if width * height > max_pixels:
        raise Rejected(f"decompression bomb: {width}x{height} is more than {max_pixels:,} pixels")
    if fmt == "JPEG" and b"\xff\xd9" not in tail:
        raise Rejected("truncated JPEG: the end-of-image marker is missing")
    if fmt == "PNG" and not tail.endswith(_PNG_END):
        raise Rejected("truncated PNG: the IEND chunk is missing")
    facts = Facts(filetype=fmt.lower(), width=width, height=height)
    _read_exif(image, facts)
    return facts


def _read_exif(image: Image.Image, facts: Facts) -> None:
    try:
        exif = image.getexif()
    except Exception:  # unreadable EXIF never rejects an image
        return
    if not exif:
        return
    flat = {**dict(exif), **dict(exif.get_ifd(_EXIF_IFD))}
    gps = dict(exif.get_ifd(_GPS_IFD))
    facts.exif = {name: value for tag, raw in flat.items()
                  if (name := ExifTags.TAGS.get(tag)) and (value := _plain(raw)) is not None}
    if gps:
        facts.exif["GPSInfo"] = {name: value for tag, raw in gps.items()
                                 if (name := ExifTags.GPSTAGS.get(tag)) and (value := _plain(raw)) is not None}
    facts.camera_make = (_text(flat.get(0x010F)) or "")[:128] or None  # the catalogue's column width
    facts.camera_model = (_text(flat.get(0x0110)) or "")[:128] or None
    facts.date_taken = _date(flat.get(0x9003) or flat.get(0x0132), flat.get(0x9011))
    facts.lat = _coordinate(gps.get(2), gps.get(1), "S", limit=90)
    facts.lon = _coordinate(gps.get(4), gps.get(3), "W", limit=180)


def _plain(value):
    """EXIF values as JSON: numbers, short strings, lists of them; binary blobs (maker notes) dropped."""
    if isinstance(value, bytes):
        return None
    if isinstance(value, str):
        value = _storable(value).strip()
        return value[:256] if value else None
    if isinstance(value, (tuple, list)):
        items = [_plain(v) for v in value[:16]]
        return [v for v in items if v is not None] or None
    try:
        number = float(value)
    except (TypeError, ValueError, ZeroDivisionError):
        return None
    if number != number or number in (float("inf"), float("-inf")):
        return None
    return int(number) if number.is_integer() and not hasattr(value, "denominator") else round(number, 8)


def _storable(text: str) -> str:
    """What PostgreSQL can store: no NUL, no lone surrogate (EXIF strings are whatever the camera wrote)."""
    return "".join(ch for ch in text if ch != "\x00" and not "\ud800" <= ch <= "\udfff")


def _text(value) -> str | None:
    return _plain(value) if isinstance(value, str) else None


def _date(value, offset) -> datetime | None:
    """EXIF "YYYY:MM:DD HH:MM:SS", with OffsetTimeOriginal when present; UTC otherwise."""
    if not isinstance(value, str):
        return None
    try:
        taken = datetime.strptime(value.strip("\x00 ")[:19], "%Y:%m:%d %H:%M:%S")
    except ValueError:
        return None
    if isinstance(offset, str):
        try:  # in UTC, as it is stored; 9999-12-31 at -23:59 is past the last year a timestamp can hold
            return datetime.fromisoformat(taken.isoformat() + offset.strip("\x00 ")).astimezone(timezone.utc)
        except (ValueError, OverflowError):
            pass
    return taken.replace(tzinfo=timezone.utc)


def _coordinate(dms, ref, negative: str, *, limit: float) -> float | None:
    """Decimal degrees, or None when the GPS tag is missing or meaningless (a 0/0 rational is NaN, which
    would make every JSON page holding the image unreadable)."""
    try:
        degrees, minutes, seconds = (float(x) for x in dms)
    except (TypeError, ValueError, ZeroDivisionError):
        return None
    value = degrees + minutes / 60 + seconds / 3600
    if not math.isfinite(value) or not 0 <= value <= limit:
        return None
    if isinstance(ref, bytes):
        ref = ref.decode(errors="ignore")
    if isinstance(ref, str) and ref.strip("\x00 ").upper() == negative:
        value = -value
    return round(value, 7)
