"""Path converters shared by the URL modules.

``<id64:pk>``: a non-negative integer that fits the database's bigint. Django's ``<int:...>``
takes any number of digits, so /api/assignments/99999999999999999999999/ reached the views with
an id no primary key can have; this one does not match it, so the URL answers 404 before any
view or query runs. Importing the module registers the converter (once).
"""
from __future__ import annotations

from django.urls import register_converter

MAX_ID = 2**63 - 1  # PostgreSQL bigint / SQLite INTEGER


class Id64Converter:
    regex = "[0-9]{1,19}"

    def to_python(self, value: str) -> int:
        number = int(value)
        if number > MAX_ID:
            raise ValueError(f"{value} is beyond a 64-bit id")  # no match: 404
        return number

    def to_url(self, value) -> str:
        return str(int(value))


register_converter(Id64Converter, "id64")
