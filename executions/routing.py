from django.urls import path

from executions.bearer_consumer import TokenOrSessionExecutionConsumer

websocket_urlpatterns = [
    path("ws/executions/<int:execution_id>/", TokenOrSessionExecutionConsumer.as_asgi()),
]
