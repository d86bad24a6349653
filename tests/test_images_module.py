"""Checks that each generator in tests/images.py produces what it claims. No database needed."""
from __future__ import annotations

import hashlib
import io
import struct
import zlib

import pytest
from PIL import Image, ImageChops, ImageStat

from tests import images


def _open(data: bytes) -> Image.Image:
    return Image.open(io.BytesIO(data))


def test_jpeg_decodes_with_size_and_eoi():
    img = _open(images.jpeg(width=40, height=30))
    img.load()
    assert (img.format, img.size, img.mode) == ("JPEG", (40, 30), "RGB")
    assert images.jpeg().endswith(b"\xff\xd9")


def test_jpeg_seed_changes_bytes_and_pixels():
    a, b = images.jpeg(seed=1), images.jpeg(seed=2)
    assert a != b
    assert _open(a).tobytes() != _open(b).tobytes()
    assert images.jpeg(seed=1) == a  # deterministic


def test_jpeg_exif_round_trips():
    data = images.jpeg(exif={
        "gps": (-33.8688, 151.2093),
        "datetime_original": "2024:05:06 07:08:09",
        "make": "Canon",
        "model": "EOS R5",
        "orientation": 6,
    })
    exif = _open(data).getexif()
    assert (exif[0x010F], exif[0x0110], exif[0x0112]) == ("Canon", "EOS R5", 6)
    assert exif.get_ifd(0x8769)[0x9003] == "2024:05:06 07:08:09"
    gps = exif.get_ifd(0x8825)
    assert (gps[1], gps[3]) == ("S", "E")
    lat, lon = gps[2], gps[4]
    assert (lat[0], lon[0]) == (33, 151)
    assert lat[0] + lat[1] / 60 + lat[2] / 3600 == pytest.approx(33.8688, abs=1e-6)
    assert lon[0] + lon[1] / 60 + lon[2] / 3600 == pytest.approx(151.2093, abs=1e-6)


def test_jpeg_rejects_unknown_exif_key():
    with pytest.raises(ValueError):
        images.jpeg(exif={"gsp": (0, 0)})


def test_png_decodes():
    img = _open(images.png(width=20, height=10))
    img.load()
    assert (img.format, img.size) == ("PNG", (20, 10))


def test_gif_decodes():
    img = _open(images.gif(width=16, height=8))
    img.load()
    assert (img.format, img.size) == ("GIF", (16, 8))


def test_near_duplicate_differs_in_md5_but_looks_the_same():
    original = images.jpeg(exif={"make": "Canon"})
    dup = images.near_duplicate(original)
    assert hashlib.md5(dup).hexdigest() != hashlib.md5(original).hexdigest()
    a, b = _open(original), _open(dup)
    assert a.size == b.size
    assert b.getexif()[0x010F] == "Canon"
    mean_diff = ImageStat.Stat(ImageChops.difference(a.convert("RGB"), b.convert("RGB"))).mean
    assert max(mean_diff) < 5  # out of 255


def test_truncated_opens_but_fails_to_decode():
    data = images.jpeg()
    cut = images.truncated(data)
    assert data.startswith(cut) and len(cut) < len(data)
    assert not cut.endswith(b"\xff\xd9")
    img = _open(cut)  # header intact: dimensions are still readable
    assert img.size == (64, 48)
    with pytest.raises(OSError):
        img.load()


def test_bomb_png_is_small_with_valid_chunks_claiming_huge_size():
    data = images.bomb_png()
    assert len(data) < 10_000
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, kinds = 8, []
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
        (crc,) = struct.unpack(">I", data[pos + 8 + length : pos + 12 + length])
        assert crc == zlib.crc32(kind + body), kind
        if kind == b"IHDR":
            assert struct.unpack(">IIBB", body[:10]) == (100_000, 100_000, 8, 0)
        kinds.append(kind)
        pos += 12 + length
    assert kinds == [b"IHDR", b"IDAT", b"IEND"]


def test_bomb_png_trips_pillow_or_reports_size_without_decoding():
    try:
        img = _open(images.bomb_png())
    except Image.DecompressionBombError:
        return
    assert img.size == (100_000, 100_000)


def test_non_images_fail_to_open():
    assert images.empty() == b""
    text = images.text_as_jpeg()
    assert text and b"\xff\xd8" not in text
    for data in (text, images.empty()):
        with pytest.raises(Image.UnidentifiedImageError):
            _open(data)
