"""The URL a webhook's sender calls: POST /hooks/<key>/, signed instead of logged in."""

from __future__ import annotations

from django.conf import settings
from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt

from jobs import webhooks


@csrf_exempt  # the signature authenticates the request; there is no session to protect
def receive(request: HttpRequest, key: str) -> JsonResponse:
    if request.method != "POST":
        response = JsonResponse({"detail": "Only POST is allowed.", "execution": None}, status=405)
        response["Allow"] = "POST"
        return response
    # One byte past the limit is enough to know the body is too large.
    body = request.read(settings.WEBHOOK_MAX_BODY_BYTES + 1)
    outcome = webhooks.receive(key, request.headers, body)
    execution = outcome.execution.pk if outcome.execution else None
    return JsonResponse({"detail": outcome.reason, "execution": execution}, status=outcome.status)
