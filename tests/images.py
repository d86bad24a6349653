"""In-memory image files (bytes) for tests of the image-ingestion pipeline."""
from __future__ import annotations

import io
import random
import struct
import zlib

from PIL import ExifTags, Image, ImageDraw, TiffImagePlugin

_EXIF_KEYS = {"gps", "datetime_original", "make", "model", "orientation"}


def _picture(width: int, height: int, color: tuple[int, int, int], seed: int) -> Image.Image:
    # A few seeded rectangles so different seeds differ in pixels, not just in bytes.
    rng = random.Random(seed)
    img = Image.new("RGB", (width, height), color)
    draw = ImageDraw.Draw(img)
    for _ in range(4):
        x0, x1 = sorted(rng.randrange(width) for _ in range(2))
        y0, y1 = sorted(rng.randrange(height) for _ in range(2))
        draw.rectangle((x0, y0, x1, y1), fill=tuple(rng.randrange(256) for _ in range(3)))
    return img


def _save(img: Image.Image, fmt: str, **params) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **params)
    return buf.getvalue()


def _dms(value: float) -> tuple[TiffImagePlugin.IFDRational, ...]:
    """Absolute decimal degrees -> (degrees, minutes, seconds) rationals, as EXIF GPS wants."""
    # Whole milliseconds of arc, so float error can't yield e.g. 59'60".
    ms = round(abs(value) * 3_600_000)
    degrees, ms = divmod(ms, 3_600_000)
    minutes, ms = divmod(ms, 60_000)
    R = TiffImagePlugin.IFDRational
    return R(degrees, 1), R(minutes, 1), R(ms, 1000)


def _exif(fields: dict) -> bytes:
    unknown = fields.keys() - _EXIF_KEYS
    if unknown:
        raise ValueError(f"unsupported exif keys: {sorted(unknown)}")
    exif = Image.Exif()
    if "make" in fields:
        exif[ExifTags.Base.Make] = fields["make"]
    if "model" in fields:
        exif[ExifTags.Base.Model] = fields["model"]
    if "orientation" in fields:
        exif[ExifTags.Base.Orientation] = fields["orientation"]
    if "datetime_original" in fields:
        exif.get_ifd(ExifTags.IFD.Exif)[ExifTags.Base.DateTimeOriginal] = fields["datetime_original"]
    if "gps" in fields:
        lat, lon = fields["gps"]
        gps = exif.get_ifd(ExifTags.IFD.GPSInfo)
        gps[ExifTags.GPS.GPSVersionID] = b"\x02\x02\x00\x00"
        gps[ExifTags.GPS.GPSLatitudeRef] = "N" if lat >= 0 else "S"
        gps[ExifTags.GPS.GPSLatitude] = _dms(lat)
        gps[ExifTags.GPS.GPSLongitudeRef] = "E" if lon >= 0 else "W"
        gps[ExifTags.GPS.GPSLongitude] = _dms(lon)
    return exif.tobytes()


def jpeg(
    width: int = 64,
    height: int = 48,
    color: tuple[int, int, int] = (200, 30, 30),
    seed: int = 0,
    quality: int = 90,
    exif: dict | None = None,
) -> bytes:
    """A decodable JPEG. exif keys: gps (lat, lon), datetime_original, make, model, orientation."""
    params = {"quality": quality}
    if exif:
        params["exif"] = _exif(exif)
    return _save(_picture(width, height, color, seed), "JPEG", **params)


def png(
    width: int = 64,
    height: int = 48,
    color: tuple[int, int, int] = (30, 200, 30),
    seed: int = 0,
) -> bytes:
    return _save(_picture(width, height, color, seed), "PNG")


def near_duplicate(jpeg_bytes: bytes, quality: int = 85) -> bytes:
    """The same picture (and EXIF) re-encoded: different bytes and MD5, same look and size."""
    img = Image.open(io.BytesIO(jpeg_bytes))
    # 4:4:4 chroma keeps the re-encode close to the original (Pillow's default 4:2:0 smears
    # colour edges on small images), and differs from jpeg()'s 4:2:0 so the bytes always change.
    out = _save(img, "JPEG", quality=quality, subsampling=0, exif=img.info.get("exif", b""))
    if out == jpeg_bytes:
        raise ValueError(f"re-encoding at quality={quality} gave identical bytes; pick another quality")
    return out


def truncated(jpeg_bytes: bytes, keep: float = 0.6) -> bytes:
    """The first `keep` fraction of the bytes, but always past the scan header and short of EOI,
    so the file still opens (size known) and fails only when the pixels are decoded."""
    sos = jpeg_bytes.index(b"\xff\xda")
    scan_start = sos + 2 + struct.unpack(">H", jpeg_bytes[sos + 2 : sos + 4])[0]
    cut = min(max(int(len(jpeg_bytes) * keep), scan_start + 1), len(jpeg_bytes) - 2)
    return jpeg_bytes[:cut]


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def bomb_png(width: int = 100_000, height: int = 100_000) -> bytes:
    """A few hundred bytes whose IHDR claims width x height 8-bit grayscale (a decompression
    bomb). The IDAT holds only the first rows; a decoder that trusted the header would
    allocate width * height bytes before noticing."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8-bit, grayscale, no interlace
    rows = (b"\x00" + b"\x00" * width) * min(height, 4)  # filter byte "None" + zero pixels
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", ihdr)
        + _chunk(b"IDAT", zlib.compress(rows, 9))
        + _chunk(b"IEND", b"")
    )


def text_as_jpeg() -> bytes:
    """Not an image at all; meant to be uploaded under a .jpg name."""
    return b"this is not an image\n" * 10


def empty() -> bytes:
    return b""


def gif(width: int = 32, height: int = 32) -> bytes:
    return _save(_picture(width, height, (30, 30, 200), seed=0), "GIF")
