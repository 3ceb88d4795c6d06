"""Request parsing: DRF reads the body as a stream, past Django's DATA_UPLOAD_MAX_MEMORY_SIZE."""

from __future__ import annotations

import io
from typing import Any

from django.conf import settings
from rest_framework import exceptions, parsers


class RequestTooLarge(exceptions.APIException):
    status_code = 413
    default_detail = "The request body is too large."
    default_code = "request_too_large"


class LimitedJSONParser(parsers.JSONParser):
    """JSON, refused with 413 past API_MAX_BODY_BYTES."""

    def parse(self, stream: Any, media_type: str | None = None, parser_context: Any = None) -> Any:
        limit = settings.API_MAX_BODY_BYTES
        body = stream.read(limit + 1) if stream is not None else b""
        if len(body) > limit:
            raise RequestTooLarge(f"The request body is larger than {limit} bytes.")
        return super().parse(io.BytesIO(body), media_type, parser_context)
