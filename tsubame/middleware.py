from collections.abc import Callable

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils import timezone

from accounts import timezones


class ContentSecurityPolicyMiddleware:
    """Sends CONTENT_SECURITY_POLICY on every response that does not set its own.

    Scripts come only from our own static files (no inline script, no CDN); see settings.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        response.headers.setdefault("Content-Security-Policy", settings.CONTENT_SECURITY_POLICY)
        return response


API_PREFIX = "/api/"


class ApiNotFoundMiddleware:
    """A URL under /api/ that names no endpoint (`/api/v1/servers/abc/`) answers in JSON.

    DRF writes every error of its own views as JSON; a URL that matches none never reaches
    DRF, and Django would answer with the web UI's HTML page.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if (
            response.status_code == 404
            and request.path_info.startswith(API_PREFIX)
            and not response.get("Content-Type", "").startswith("application/json")
        ):
            return JsonResponse({"detail": "Not found."}, status=404)
        return response


class TimeZoneMiddleware:
    """Renders the web UI's times in the person's zone (accounts.timezones).

    The API answers in TIME_ZONE whoever asks: a script and a browser read the same offsets.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if request.path_info.startswith(API_PREFIX):
            return self.get_response(request)
        request.time_zone = zone = timezones.zone_for(request)
        timezone.activate(zone.tzinfo)
        try:
            return self.get_response(request)
        finally:
            timezone.deactivate()
