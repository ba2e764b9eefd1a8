"""One mapping of domain errors to HTTP answers for the whole API (DRF's EXCEPTION_HANDLER).

Services raise domain exceptions; views never translate them one by one.
"""
from __future__ import annotations

from rest_framework import status
from rest_framework.exceptions import NotFound, PermissionDenied, ValidationError
from rest_framework.response import Response
from rest_framework.views import exception_handler

from annotator import selectors, services
from annotator.idempotency import RequestIdReused
from annotator.splits import SplitError


def domain_exception_handler(exc, context):
    if isinstance(exc, SplitError):
        exc = ValidationError(exc.errors)
    elif isinstance(exc, services.StaleVersion):
        from .serializers import AnnotationSerializer

        return Response(
            {"detail": "This split was changed elsewhere since you opened it; reload to see the saved one.",
             "current": AnnotationSerializer(exc.current).data if exc.current else None},
            status=status.HTTP_409_CONFLICT)
    elif isinstance(exc, RequestIdReused):
        return Response({"detail": str(exc), "request_id": ["already used for a different request."]},
                        status=status.HTTP_422_UNPROCESSABLE_ENTITY)
    elif isinstance(exc, PermissionError):  # services.Revoked and other refusals by the domain
        exc = PermissionDenied(str(exc))
    elif isinstance(exc, selectors.NotFound):
        exc = NotFound(str(exc))
    return exception_handler(exc, context)
