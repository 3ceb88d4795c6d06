"""The live-output consumer for sockets opened with an API token as well as with a session.

ExecutionConsumer asks the session who the user is. A socket that came with
`Authorization: Bearer` (tsubame.websocket.BearerTokenMiddleware) has no session: it asks the
token instead, as the token stands at each access check, so a revoked or expired token or a
deactivated user ends the stream as a logout does. Which executions the user may see is the
same question (accounts.policy) either way.
"""

from __future__ import annotations

from channels.db import database_sync_to_async

from executions.consumers import CLOSE_NOT_FOUND, CLOSE_UNAUTHENTICATED, ExecutionConsumer
from tsubame.websocket import bearer_secret, bearer_user


class TokenOrSessionExecutionConsumer(ExecutionConsumer):
    async def refusal(self) -> int | None:
        if bearer_secret(self.scope) is None:
            return await super().refusal()
        user = await bearer_user(self.scope)
        if user is None:
            return CLOSE_UNAUTHENTICATED
        if not await database_sync_to_async(self._visible)(user):
            return CLOSE_NOT_FOUND
        return None
