"""Request ids: the one home of the idempotency rule of every save and adjudication.

A client-chosen request id is bound to what the request asked for (`request_digest`: kind, target,
parsed body). The same id with the same request replays the stored result; the same id with another
body or target is refused (RequestIdReused, a 422), and nothing changes. The applied request is the
AuditEvent that carries the actor's request id and its digest.
"""
from __future__ import annotations

import hashlib
import json

from .models import AuditEvent


class RequestIdReused(Exception):
    """An idempotency key came back with another body or for another target: never a silent replay."""


def request_digest(kind: str, target: int, body: dict) -> str:
    """What a request asked for, as SHA-256: a request id is bound to (kind, target, body)."""
    raw = json.dumps({"kind": kind, "target": target, "body": body}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(raw.encode()).hexdigest()


def applied_before(actor, request_id, digest: str) -> AuditEvent | None:
    """The event of this actor's request id if it was applied before (then replay it), None if the
    id is new; RequestIdReused if it was applied to another request."""
    done = AuditEvent.objects.filter(actor=actor, request_id=request_id).first()
    if done is not None and done.request_digest != digest:
        raise RequestIdReused(
            f"request_id {request_id} was already used for a different request (another body or another "
            "assignment/block); nothing was saved. Send a new request_id for a new save.")
    return done
