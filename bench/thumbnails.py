"""Thumbnails of 12-megapixel JPEGs: per-image time of app.ingest.renditions.thumbnail (draft mode: the JPEG decoder
scales by 1/2..1/8 while decoding) against a full decode + resize with Pillow, same images, same run.

Images: 4000x3000 noise over a gradient, quality 90, made before the clock starts (each baseline and ours decode
the same bytes). Baseline: Image.open, full-resolution load, EXIF transpose, RGB, resize to the same size with
LANCZOS, save as JPEG (the work ours does, without draft). Run alternately image by image so drift favours neither.
Prints ms/image of each and the ratio baseline/ours (goal >= 3).
Run: .venv/bin/python bench/thumbnails.py [--count 6] [--size 256]
"""
from __future__ import annotations

import argparse
import io
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from PIL import Image, ImageOps  # noqa: E402

from app.ingest.renditions import thumbnail  # noqa: E402

MAX_PIXELS = 100_000_000


def photo(seed: int, width: int = 4000, height: int = 3000) -> bytes:
    """A 12-MP JPEG that compresses like a photo (detail everywhere), not like a flat colour."""
    noise = Image.effect_noise((width, height), 40 + seed)
    gradient = Image.linear_gradient("L").resize((width, height))
    image = Image.merge("RGB", (noise, gradient, Image.blend(noise, gradient, 0.5)))
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def full_decode(data: bytes, size: int) -> bytes:
    with Image.open(io.BytesIO(data)) as image:
        image.load()
        rgb = (ImageOps.exif_transpose(image) or image).convert("RGB")
    scale = size / max(rgb.size)
    small = rgb.resize((max(1, round(rgb.width * scale)), max(1, round(rgb.height * scale))), Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    small.save(buffer, "JPEG", quality=85)
    return buffer.getvalue()


def timed(fn, *args) -> tuple[float, bytes]:
    started = time.perf_counter()
    out = fn(*args)
    return time.perf_counter() - started, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=6, help="images (default 6)")
    parser.add_argument("--size", type=int, default=256, help="longest side (default 256, THUMBNAIL_SIZE)")
    args = parser.parse_args()

    photos = [photo(seed) for seed in range(args.count)]
    baseline, ours = [], []
    for data in photos:
        base_t, base_out = timed(full_decode, data, args.size)
        our_t, our_out = timed(lambda d: thumbnail(d, args.size, max_pixels=MAX_PIXELS), data)
        expected = (args.size, args.size * 3 // 4)
        assert Image.open(io.BytesIO(our_out)).size == Image.open(io.BytesIO(base_out)).size == expected
        baseline.append(base_t)
        ours.append(our_t)

    base_ms, our_ms = statistics.median(baseline) * 1000, statistics.median(ours) * 1000
    print(f"{args.count} JPEGs of 4000x3000 (12 MP, quality 90, {sum(map(len, photos)) / len(photos) / 1e6:.1f} MB "
          f"each), thumbnail longest side {args.size}; medians per image")
    print(f"{'full decode + LANCZOS resize (baseline)':42} {base_ms:8.1f} ms/image")
    print(f"{'ours (draft-mode decode + LANCZOS)':42} {our_ms:8.1f} ms/image  baseline/ours {base_ms / our_ms:5.1f}x "
          f"(goal >= 3)")


if __name__ == "__main__":
    main()
