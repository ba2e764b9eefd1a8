"""The guidelines panel: a campaign's written guidelines (Markdown, set by an admin) rendered to safe
HTML, and example images of each LCZ class.

- `set_guidelines`: the one write of `Campaign.guidelines` (admin form and `manage.py set_guidelines`
  both come here), audited;
- `render_guidelines`: Markdown -> HTML with the maintained `markdown` package, then sanitised by
  `nh3` (an allow-list: no raw HTML, script, style, image or event attribute survives; links only
  http(s)/mailto, with rel="noopener noreferrer");
- `guidelines_payload`: what the workspace's panel shows: the rendered guidelines and, per class
  (lcz_model.classes order, colours and descriptions), up to `EXAMPLES_PER_CLASS` examples: the
  campaign's own pure blocks (selectors.pure_example_blocks: blindness included) or, for a class the
  campaign has none of yet, the demo's SYNTHETIC chips (static PNGs made by
  scripts/make_class_examples.py from fixtures.textures);
- `example_image`: a campaign block cut from the campaign's imagery mosaic (lcz_model.chips, the
  model's own cut), clipped to the block, as PNG, cached by the mosaic's identity (annotator.tiles).
"""
from __future__ import annotations

import hashlib
import io
import logging

import markdown
import nh3
from django.db import transaction

from lcz_model.classes import CLASSES

from . import selectors
from .models import AuditEvent, Campaign, StreetBlock

logger = logging.getLogger(__name__)

MAX_GUIDELINES_CHARS = 100_000
EXAMPLES_PER_CLASS = 4
PURE_PERMILLE = 900               # a block is a "pure" example of a class from 90 % of it
SYNTHETIC_PER_CLASS = 2           # files frontend/static/frontend/lcz-examples/<key>-<n>.png, n = 1..2
SYNTHETIC_DIR = "frontend/lcz-examples"   # under the static root
EXAMPLE_SIZE = 160                # px, the example image's side
EXAMPLE_CACHE_TIMEOUT = 7 * 24 * 3600     # keys carry the mosaic's identity: never stale

# What the admin's textarea says is supported (the allow-list below is the truth).
SUPPORTED_MARKDOWN = ("Markdown: # headings, **bold**, *italic*, lists (- or 1.), [links](https://...), "
                      "`code`, > quotes, tables and --- rules. Raw HTML, scripts and images are removed; "
                      "links open with rel=noopener.")

_MD_EXTENSIONS = ["tables", "sane_lists", "fenced_code"]
_TAGS = {"h1", "h2", "h3", "h4", "h5", "h6", "p", "br", "hr", "strong", "em", "b", "i", "code", "pre",
         "blockquote", "ul", "ol", "li", "a", "table", "thead", "tbody", "tr", "th", "td"}
_ATTRIBUTES = {"a": {"href", "title"}, "th": {"align"}, "td": {"align"}, "ol": {"start"}}
_URL_SCHEMES = {"http", "https", "mailto"}


class GuidelinesError(ValueError):
    """Guidelines that cannot be stored (too long, not text)."""


def render_guidelines(text: str) -> str:
    """Markdown -> HTML safe to put into a page as is (see the module docstring)."""
    if not text or not text.strip():
        return ""
    html = markdown.markdown(text, extensions=_MD_EXTENSIONS, output_format="html")
    return nh3.clean(html, tags=_TAGS, attributes=_ATTRIBUTES, url_schemes=_URL_SCHEMES,
                     link_rel="noopener noreferrer", strip_comments=True)


def check_guidelines(text: str) -> str:
    """The text as it will be stored (line ends normalised), or GuidelinesError."""
    if not isinstance(text, str):
        raise GuidelinesError("guidelines must be text")
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    if len(text) > MAX_GUIDELINES_CHARS:
        raise GuidelinesError(f"guidelines are {len(text):,} characters; at most {MAX_GUIDELINES_CHARS:,}")
    if "\x00" in text:
        raise GuidelinesError("guidelines contain a NUL character")
    return text


@transaction.atomic
def set_guidelines(campaign: Campaign, text: str, *, actor=None) -> bool:
    """Store the campaign's guidelines (Markdown); audited with the old and new text's digest.
    Returns False when nothing changed."""
    text = check_guidelines(text)
    campaign = Campaign.objects.select_for_update().get(pk=campaign.pk)
    before = campaign.guidelines
    if before == text:
        return False
    Campaign.objects.filter(pk=campaign.pk).update(guidelines=text)

    def digest(s: str) -> dict:
        return {"chars": len(s), "sha256": hashlib.sha256(s.encode()).hexdigest()}

    AuditEvent.objects.create(actor=actor, action="set_guidelines", campaign=campaign,
                              before=digest(before), after=digest(text))
    return True


# --- the panel's data ------------------------------------------------------------------------------

def class_key(code: str) -> str:
    """The keyboard key of a class in the editors: LCZ 1..9 -> 1..9, LCZ 10 -> 0, LCZ A..G -> a..g."""
    return "0" if code == "10" else code.lower()


def synthetic_example_paths(cls) -> list[str]:
    """Static paths of the demo's synthetic examples of a class."""
    return [f"{SYNTHETIC_DIR}/{cls.key}-{n}.png" for n in range(1, SYNTHETIC_PER_CLASS + 1)]


def guidelines_payload(user, campaign: Campaign, *, example_url, static_url) -> dict:
    """The panel's JSON: rendered guidelines and the 17 classes with their examples.
    example_url(block_id) and static_url(path) make the image addresses (the view knows the URLs)."""
    pure = selectors.pure_example_blocks(user, campaign, per_class=EXAMPLES_PER_CLASS, threshold=PURE_PERMILLE)
    has_imagery = selectors.imagery_raster_path(campaign) is not None
    classes = []
    for c in CLASSES:
        own = pure.get(c.index, []) if has_imagery else []
        if own:
            examples = [{"source": "campaign", "url": example_url(row["id"]), "block_key": row["block_key"],
                         "share": row["share"], "alt": f"{c.label} example: block {row['block_key']}, "
                                                      f"{row['share'] / 10:.0f} % {c.name}"} for row in own]
        else:
            examples = [{"source": "synthetic", "url": static_url(path), "block_key": None, "share": None,
                         "alt": f"{c.label} {c.name}: synthetic example (demo imagery)"}
                        for path in synthetic_example_paths(c)]
        classes.append({"index": c.index, "key": c.key, "code": c.code, "label": c.label, "name": c.name,
                        "group": c.group, "colour": c.colour, "description": c.description,
                        "keyboard": class_key(c.code), "examples": examples})
    return {"campaign": campaign.pk, "guidelines_html": render_guidelines(campaign.guidelines),
            "pure_threshold": PURE_PERMILLE, "classes": classes}


# --- example images of campaign blocks --------------------------------------------------------------

def example_cache_key(campaign: Campaign, block: StreetBlock) -> str | None:
    """The image's cache key (and ETag source): the mosaic's identity, the block and the render size;
    None when the campaign has no mosaic on disk."""
    from . import tiles

    try:
        sf = tiles.mosaic_file(campaign)
    except tiles.ImageryMissing:
        return None
    return f"lcz-example:{sf.identity}:{block.pk}:{block.block_key}:{EXAMPLE_SIZE}"


def example_etag(key: str) -> str:
    return '"' + hashlib.sha1(key.encode()).hexdigest()[:24] + '"'


def example_image(campaign: Campaign, block: StreetBlock, key: str) -> bytes | None:
    """PNG of the block over the campaign's imagery, outside the block transparent; None when the
    imagery holds no pixel of it. Cached under `key` (example_cache_key)."""
    from . import tiles

    cache = tiles.tile_cache()
    try:
        hit = cache.get(key)
    except Exception:  # a cache outage costs a render, never the answer
        logger.warning("cache unavailable; rendering %s", key, exc_info=True)
        hit, cache = None, None
    if hit is not None:
        return hit or None
    data = _render_example(campaign, block)
    if cache is not None:
        try:
            cache.set(key, data if data is not None else b"", EXAMPLE_CACHE_TIMEOUT)
        except Exception:
            logger.warning("cache unavailable; %s not stored", key, exc_info=True)
    return data


def _render_example(campaign: Campaign, block: StreetBlock) -> bytes | None:
    import numpy as np
    import shapely
    from PIL import Image

    from lcz_model.chips import cut_block_chips

    path = selectors.imagery_raster_path(campaign)
    if path is None:
        return None
    try:
        chips = cut_block_chips(str(path), shapely.from_wkb(bytes(block.geom.wkb)), polygon_crs="EPSG:4326",
                                size=EXAMPLE_SIZE, max_local=1)
    except ValueError:
        return None
    if not chips.mask.any() or not chips.global_rgb.any():
        return None
    rgba = np.dstack([chips.global_rgb, chips.mask]).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(rgba, "RGBA").save(buf, "PNG", optimize=True)
    return buf.getvalue()
