"""Request parsing: JSON bodies up to API_MAX_BODY_BYTES, read from the request stream.

Not a JSONParser subclass on purpose: DRF hands those `request.body`, which Django refuses
past DATA_UPLOAD_MAX_MEMORY_SIZE (2.5 MB) with an HTML 400 before the limit here is checked.
"""

from __future__ import annotations

import io
from typing import Any

from django.conf import settings
from rest_framework import exceptions, parsers, renderers


class RequestTooLarge(exceptions.APIException):
    status_code = 413
    default_detail = "The request body is too large."
    default_code = "request_too_large"


class LimitedJSONParser(parsers.BaseParser):
    """JSON, refused with 413 past API_MAX_BODY_BYTES."""

    media_type = "application/json"
    renderer_class = renderers.JSONRenderer

    def parse(self, stream: Any, media_type: str | None = None, parser_context: Any = None) -> Any:
        limit = settings.API_MAX_BODY_BYTES
        body = stream.read(limit + 1) if stream is not None else b""
        if len(body) > limit:
            raise RequestTooLarge(f"The request body is larger than {limit} bytes.")
        return parsers.JSONParser().parse(io.BytesIO(body), media_type, parser_context)
