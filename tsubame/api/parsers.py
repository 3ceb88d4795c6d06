"""Request parsing: JSON bodies up to API_MAX_BODY_BYTES and MAX_NESTING levels deep, read
from the request stream.

Not a JSONParser subclass on purpose: DRF hands those `request.body`, which Django refuses
past DATA_UPLOAD_MAX_MEMORY_SIZE with an HTML 400 before the limit here is checked.
"""

from __future__ import annotations

import io
from typing import Any

from django.conf import settings
from rest_framework import exceptions, parsers, renderers

# No body of this API nests more than a few levels. Refusing deeper ones here keeps parsing
# and every later step that walks a value recursively (validation) clear of Python's
# recursion limit, which would otherwise answer a 500.
MAX_NESTING = 32


def _nested_deeper_than(value: Any, limit: int) -> bool:
    pending = [(value, 1)]
    while pending:
        item, depth = pending.pop()
        if isinstance(item, dict | list):
            if depth > limit:
                return True
            children = item.values() if isinstance(item, dict) else item
            pending.extend((child, depth + 1) for child in children)
    return False


class RequestTooLarge(exceptions.APIException):
    status_code = 413
    default_detail = "The request body is too large."
    default_code = "request_too_large"


class LimitedJSONParser(parsers.BaseParser):
    """JSON, refused with 413 past API_MAX_BODY_BYTES and with 400 past MAX_NESTING."""

    media_type = "application/json"
    renderer_class = renderers.JSONRenderer

    def parse(self, stream: Any, media_type: str | None = None, parser_context: Any = None) -> Any:
        limit = settings.API_MAX_BODY_BYTES
        body = stream.read(limit + 1) if stream is not None else b""
        if len(body) > limit:
            raise RequestTooLarge(f"The request body is larger than {limit} bytes.")
        too_deep = exceptions.ParseError(
            f"JSON parse error - nested deeper than {MAX_NESTING} levels."
        )
        try:
            data = parsers.JSONParser().parse(io.BytesIO(body), media_type, parser_context)
        except RecursionError:
            raise too_deep from None
        if _nested_deeper_than(data, MAX_NESTING):
            raise too_deep
        return data
