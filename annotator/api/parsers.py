"""The API's one request parser: JSON, bounded in size and nesting, answering 400 on anything else.

DRF's JSONParser lets a body like ``[[[[...]]]]`` ten thousand deep reach ``json.load``, whose
RecursionError escapes as a 500, and it leaves the size to Django's DATA_UPLOAD_MAX_MEMORY_SIZE,
which answers an HTML page. This parser reads at most ``max_bytes`` (+1 to notice more), parses,
and refuses nesting deeper than ``max_depth`` and lone surrogate escapes ("\\ud800", which Python
parses into a str that cannot be encoded: a 500 when echoed in an error message) with a JSON
``{"detail": ...}`` 400.

NaN and Infinity still parse unless REST_FRAMEWORK["STRICT_JSON"] is on, so that the split
validator can name the field that holds them.
"""
from __future__ import annotations

import json

from django.conf import settings
from rest_framework import renderers
from rest_framework.exceptions import ParseError
from rest_framework.parsers import BaseParser
from rest_framework.settings import api_settings
from rest_framework.utils import json as drf_json

# A save or an adjudication is 3 levels deep ({"split": {"lcz_1": 0}}); 32 is plenty.
MAX_DEPTH = 32
# 2.5 MB, Django's default for request bodies; a split with a 4000-character comment is < 10 kB.
DEFAULT_MAX_BYTES = 2_621_440


def json_problem(value, max_depth: int, *, strings: bool = True) -> str | None:
    """What is wrong with parsed JSON `value`, or None: nesting deeper than `max_depth`, or (when
    `strings`) a lone surrogate escape like "\\ud800" in a key or string, which is not text: it
    cannot be stored or even rendered back in an error message (UnicodeEncodeError, a 500).
    Iterative: no recursion."""
    stack = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, str):
            if strings and not _is_text(node):
                return "a string holds a lone surrogate escape (\\ud800-\\udfff): not valid Unicode."
            continue
        if isinstance(node, dict):
            if strings and not all(_is_text(k) for k in node):
                return "a key holds a lone surrogate escape (\\ud800-\\udfff): not valid Unicode."
            children = node.values()
        elif isinstance(node, list):
            children = node
        else:
            continue
        if depth > max_depth:
            return f"nested deeper than {max_depth} levels."
        stack.extend((child, depth + 1) for child in children if isinstance(child, (dict, list, str)))
    return None


def _is_text(s: str) -> bool:
    try:
        s.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


class BoundedJSONParser(BaseParser):
    """JSON with a size and a depth limit (not a JSONParser subclass on purpose: DRF would read the
    whole body through Django's `request.body` first, whose size error is an HTML page)."""

    media_type = "application/json"
    renderer_class = renderers.JSONRenderer
    max_depth = MAX_DEPTH

    @property
    def max_bytes(self) -> int:
        return getattr(settings, "DATA_UPLOAD_MAX_MEMORY_SIZE", None) or DEFAULT_MAX_BYTES

    def parse(self, stream, media_type=None, parser_context=None):
        parser_context = parser_context or {}
        limit = self.max_bytes
        raw = stream.read(limit + 1) if stream is not None else b""
        if len(raw) > limit:
            raise ParseError(f"JSON body too large: more than {limit} bytes.")
        encoding = parser_context.get("encoding", settings.DEFAULT_CHARSET)
        try:
            text = raw.decode(encoding)
        except (UnicodeDecodeError, LookupError) as exc:
            raise ParseError(f"JSON parse error - body is not valid {encoding}: {exc}") from None
        parse_constant = drf_json.strict_constant if api_settings.STRICT_JSON else None
        try:
            data = json.loads(text, parse_constant=parse_constant)
        except RecursionError:
            raise ParseError(f"JSON parse error - nested deeper than {self.max_depth} levels.") from None
        except ValueError as exc:
            raise ParseError(f"JSON parse error - {exc}") from None
        # the text itself came from strict UTF-8: only \u escapes can make lone surrogates
        problem = json_problem(data, self.max_depth, strings="\\ud" in text.lower())
        if problem:
            raise ParseError(f"JSON parse error - {problem}")
        return data
