import os
from typing import TYPE_CHECKING

from django.core.asgi import get_asgi_application

if TYPE_CHECKING:
    from channels.routing import ProtocolTypeRouter

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tsubame.settings")
# Django must be set up before anything imports models (the consumers do).
django_asgi_app = get_asgi_application()


def build_application() -> "ProtocolTypeRouter":
    """The ASGI router, built by a function so that tests can build their own."""
    from channels.auth import AuthMiddlewareStack
    from channels.routing import ProtocolTypeRouter, URLRouter

    from executions.routing import websocket_urlpatterns
    from tsubame.websocket import BearerTokenMiddleware, SameOriginMiddleware

    router = URLRouter(websocket_urlpatterns)
    return ProtocolTypeRouter(
        {
            "http": django_asgi_app,
            "websocket": BearerTokenMiddleware(
                router, otherwise=SameOriginMiddleware(AuthMiddlewareStack(router))
            ),
        }
    )


application = build_application()
