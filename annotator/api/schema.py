"""OpenAPI schema post-processing (drf-spectacular POSTPROCESSING_HOOKS).

What the serializers cannot say by themselves:
- the request bodies refuse unknown fields (serializers.NoUnknownFieldsMixin answers 400 naming
  each), so their components say ``additionalProperties: false``; flags are unique;
- a split is an object of the 17 class keys, each a per-mille integer 0..1000 (a `Split`
  component), rather than "any object" (SplitField passes the value through so that
  annotator.splits can name each bad key).
"""
from __future__ import annotations

from lcz_model.classes import KEYS

CLOSED_REQUEST_COMPONENTS = ("SaveAnnotation", "Adjudicate")  # serializers with NoUnknownFieldsMixin

SPLIT_SCHEMA = {
    "type": "object",
    "description": "Per-mille of each of the 17 LCZ classes (lcz_model.classes order): every key, 0 for "
                   "absent classes; 1000 in all to submit or adjudicate, at most 1000 in a draft.",
    "properties": {k: {"type": "integer", "minimum": 0, "maximum": 1000} for k in KEYS},
    "required": list(KEYS),
    "additionalProperties": False,
}


def postprocess_api_schema(result, generator, request, public):
    components = result.get("components", {}).get("schemas", {})
    components.setdefault("Split", SPLIT_SCHEMA)
    for name in CLOSED_REQUEST_COMPONENTS:
        component = components.get(name)
        if component is None:
            continue
        component["additionalProperties"] = False
        flags = component.get("properties", {}).get("flags")
        if flags is not None:
            flags["uniqueItems"] = True  # services.save_annotation: "each flag at most once"
        split = component.get("properties", {}).get("split")
        if split is not None and "$ref" not in split:
            description = split.get("description")
            component["properties"]["split"] = {"allOf": [{"$ref": "#/components/schemas/Split"}],
                                                **({"description": description} if description else {})}
    return result
