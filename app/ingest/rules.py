"""A set's validation rules: what a file must be to be accepted, whatever its source. A rule left out takes
its default from settings; a rejection names the rule and the value."""
from __future__ import annotations

from dataclasses import dataclass

from app.errors import Unprocessable
from app.services.image_facts import Facts

READABLE_FORMATS = ("jpeg", "png", "webp", "tiff", "bmp", "gif")
EXIF_FIELDS = ("date_taken", "gps", "camera")
_BOUNDS = ("min_width", "max_width", "min_height", "max_height")


@dataclass(frozen=True)
class Rules:
    formats: tuple[str, ...]
    max_bytes: int
    min_width: int | None = None
    max_width: int | None = None
    min_height: int | None = None
    max_height: int | None = None
    required_exif: tuple[str, ...] = ()

    @property
    def allowed_formats(self) -> frozenset[str]:
        """As image_facts.read_facts wants them: Pillow's upper-case names."""
        return frozenset(f.upper() for f in self.formats)

    def as_dict(self) -> dict:
        return {"formats": list(self.formats), "max_bytes": self.max_bytes, "min_width": self.min_width,
                "max_width": self.max_width, "min_height": self.min_height, "max_height": self.max_height,
                "required_exif": list(self.required_exif)}


def defaults(settings) -> Rules:
    return Rules(formats=tuple(sorted(f.lower() for f in settings.image_formats)), max_bytes=settings.max_image_bytes)


def effective(stored: dict | None, settings) -> Rules:
    """The rules a set applies: what it was created with, over the defaults."""
    base = defaults(settings)
    if not stored:
        return base
    return Rules(
        formats=tuple(stored.get("formats") or base.formats),
        max_bytes=min(stored.get("max_bytes") or base.max_bytes, settings.max_image_bytes),
        **{bound: stored.get(bound) for bound in _BOUNDS},
        required_exif=tuple(stored.get("required_exif") or ()))


def checked(validation: dict | None, settings) -> dict | None:
    """What POST /image_sets may store as the set's rules (the spec has checked the types), or Unprocessable
    naming the field."""
    if not validation:
        return None
    rules = {key: value for key, value in validation.items() if value is not None}
    if rules.get("max_bytes") is not None and rules["max_bytes"] > settings.max_image_bytes:
        raise Unprocessable(f"validation.max_bytes is {rules['max_bytes']:,}, more than this service takes "
                            f"(MAX_IMAGE_BYTES {settings.max_image_bytes:,})", field="validation.max_bytes")
    for low, high in (("min_width", "max_width"), ("min_height", "max_height")):
        if rules.get(low) is not None and rules.get(high) is not None and rules[low] > rules[high]:
            raise Unprocessable(f"validation.{low} ({rules[low]}) is more than validation.{high} ({rules[high]})",
                                field=f"validation.{low}")
    if "formats" in rules:
        rules["formats"] = sorted(set(rules["formats"]))
    if "required_exif" in rules:
        rules["required_exif"] = sorted(set(rules["required_exif"]))
    return rules or None


def violation(facts: Facts, size: int, rules: Rules) -> str | None:
    """The first rule the file breaks, as the reason shown in the report; None when it keeps them all. The format
    and the pixel limit are checked while reading (image_facts.read_facts), before this."""
    if size > rules.max_bytes:
        return f"rule max_bytes: {size:,} bytes is more than {rules.max_bytes:,}"
    for bound, value in (("min_width", facts.width), ("max_width", facts.width),
                         ("min_height", facts.height), ("max_height", facts.height)):
        limit = getattr(rules, bound)
        if limit is None:
            continue
        if bound.startswith("min") and value < limit:
            return f"rule {bound}: {bound[4:]} {value} is less than {limit}"
        if bound.startswith("max") and value > limit:
            return f"rule {bound}: {bound[4:]} {value} is more than {limit}"
    for name in rules.required_exif:
        missing = {"date_taken": facts.date_taken is None,
                   "gps": facts.lat is None or facts.lon is None,
                   "camera": not (facts.camera_make or facts.camera_model)}[name]
        if missing:
            return f"rule required_exif: the file has no {_EXIF_WORDS[name]} in its EXIF"
    return None


_EXIF_WORDS = {"date_taken": "date taken", "gps": "GPS position", "camera": "camera make or model"}
