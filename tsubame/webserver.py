"""tsubame's web server: daphne, refusing a request body over HTTP_MAX_BODY_BYTES as it arrives.

Twisted reads a whole request body (into memory or a temporary file) before daphne sees the
request, and daphne then queues all of it for the application at once, so neither an ASGI
middleware nor a Django setting can keep a large body out of memory. The limit therefore acts
where Twisted reads the body: a Content-Length over it is refused before any of the body is
read, a chunked body as soon as the bytes received pass it. Either way the client gets 413 and
the connection is closed, so the rest of that body is never read.

`python -m tsubame.webserver` takes daphne's options (`-b`, `-p`, `--proxy-headers`, ...) and
serves tsubame.asgi:application.
"""

import logging
import os
import sys
from typing import Any

from daphne.cli import CommandLineInterface
from daphne.http_protocol import HTTPFactory, WebRequest
from daphne.server import Server
from django.conf import settings
from twisted.internet.interfaces import IProtocol

logger = logging.getLogger(__name__)

APPLICATION = "tsubame.asgi:application"

_TOO_LARGE_BODY = b"Request body too large.\n"
TOO_LARGE = (
    b"HTTP/1.1 413 Content Too Large\r\n"
    b"Content-Type: text/plain; charset=utf-8\r\n"
    b"Content-Length: %d\r\n"
    b"Connection: close\r\n"
    b"\r\n%s" % (len(_TOO_LARGE_BODY), _TOO_LARGE_BODY)
)


class BodyLimitedRequest(WebRequest):
    """daphne's request, refusing a body larger than its server's `max_body_bytes`."""

    server: "BodyLimitedServer"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.body_bytes = 0
        self.refused = False
        super().__init__(*args, **kwargs)

    def gotLength(self, length: int | None) -> None:
        # Called once the headers are in: `length` is the Content-Length, None when chunked.
        if length is not None and length > self.server.max_body_bytes:
            self.refuse(f"Content-Length {length}")
        else:
            super().gotLength(length)

    def handleContentChunk(self, data: bytes) -> None:
        # After a refusal the rest of the bytes already read in the same call still come here.
        if self.refused:
            return
        self.body_bytes += len(data)
        if self.body_bytes > self.server.max_body_bytes:
            self.refuse(f"a chunked body past {self.body_bytes} bytes")
        else:
            super().handleContentChunk(data)

    def requestReceived(self, command: bytes, path: bytes, version: bytes) -> None:
        # The end of a refused body can arrive in the read that refused it: never process it.
        if not self.refused:
            super().requestReceived(command, path, version)

    def refuse(self, what: str) -> None:
        self.refused = True
        # The method and path are not known yet: Twisted sets them once the body is in.
        client = self.getClientAddress()
        logger.warning(
            "refused a request body from %s: %s (HTTP_MAX_BODY_BYTES is %d)",
            getattr(client, "host", client),
            what,
            self.server.max_body_bytes,
        )
        # Twisted would answer "Expect: 100-continue" right after this, inviting the body.
        self.requestHeaders.removeHeader(b"Expect")
        self.channel.transport.write(TOO_LARGE)
        # Stops reading at once and closes once the 413 is sent.
        self.channel.loseConnection()


class BodyLimitedHTTPFactory(HTTPFactory):
    def buildProtocol(self, addr: Any) -> IProtocol:
        protocol = super().buildProtocol(addr)
        protocol.requestFactory = BodyLimitedRequest
        return protocol


class BodyLimitedServer(Server):
    """daphne's server, with BodyLimitedRequest as its HTTP request class."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.max_body_bytes: int = settings.HTTP_MAX_BODY_BYTES

    # daphne's run() creates its HTTP factory and names the request class inside it, with no
    # option to choose another; the factory it assigns here is replaced by ours, before any
    # port listens, rather than copying run().
    @property
    def http_factory(self) -> HTTPFactory:
        return self._http_factory

    @http_factory.setter
    def http_factory(self, factory: HTTPFactory) -> None:
        self._http_factory = BodyLimitedHTTPFactory(factory.server)


class WebServerCommandLine(CommandLineInterface):
    server_class = BodyLimitedServer


def main(argv: list[str]) -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tsubame.settings")
    WebServerCommandLine().run([*argv, APPLICATION])


if __name__ == "__main__":
    main(sys.argv[1:])
