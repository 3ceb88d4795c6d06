"""What every operation shares, added to the generated OpenAPI schema.

It follows from what all viewsets share (tsubame.api.base): authentication, the policy,
strict input (unknown fields are refused), bounded bodies and JSON errors. Responses
particular to one operation (409, 502) are declared on it with `error_response`.
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import OpenApiResponse

ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "detail": {"type": "string", "description": "What went wrong, for people."},
        "errors": {
            "type": "object",
            "additionalProperties": {},
            "description": "For invalid input: the problems of each field or parameter "
            "(`non_field_errors` for the request as a whole).",
        },
    },
    "required": ["detail"],
}
ERROR_REF = {"$ref": "#/components/schemas/Error"}


def error_response(description: str) -> OpenApiResponse:
    return OpenApiResponse(ERROR_REF, description=description)


def document_errors(result: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
    """drf-spectacular postprocessing hook: the shared error responses of each operation."""
    components = result.setdefault("components", {}).setdefault("schemas", {})
    for name, component in components.items():
        if name.endswith("Request"):  # request bodies (COMPONENT_SPLIT_REQUEST): all strict
            component["additionalProperties"] = False
    components["Error"] = ERROR_SCHEMA
    for path, operations in result.get("paths", {}).items():
        for method, operation in operations.items():
            query = {p["name"] for p in operation.get("parameters", []) if p["in"] == "query"}
            # Paging and ordering never refuse a value: a bad one means the default.
            validated = query - {"page", "page_size", "ordering", "format"}
            errors = {
                "401": "No valid credentials: the token is missing, malformed, unknown, "
                "expired or revoked."
            }
            if method != "get":
                errors["403"] = (
                    "Your role in the object's team does not allow this, or a session request "
                    "lacks its CSRF token."
                )
            if "{" in path or "page" in query:
                errors["404"] = "No such object (or one of a team you cannot see), or no such page."
            if validated or "requestBody" in operation:
                errors["400"] = "The request is not valid: `errors` says what, per field."
            if "requestBody" in operation:
                errors["413"] = "The body is larger than API_MAX_BODY_BYTES."
                errors["415"] = "The body is not JSON."
            responses = operation.setdefault("responses", {})
            for status, description in errors.items():
                content = {"application/json": {"schema": ERROR_REF}}
                responses.setdefault(status, {"description": description, "content": content})
    return result
