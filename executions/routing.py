from django.urls import path

from executions.consumers import ExecutionConsumer

websocket_urlpatterns = [
    path("ws/executions/<int:execution_id>/", ExecutionConsumer.as_asgi()),
]
