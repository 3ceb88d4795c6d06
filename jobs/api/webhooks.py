"""Webhooks in the API: `/api/v1/webhooks/` (managers) and `/api/v1/webhook-deliveries/`.

A webhook's secret is in two responses only: the one that created the webhook and the one
that rotated its secret. Receiving deliveries is jobs.webhooks, at /hooks/<key>/.
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.db.models import F, QuerySet, Window
from django.db.models.functions import RowNumber
from drf_spectacular.utils import extend_schema
from rest_framework import mixins, serializers, status
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from accounts.models import Source
from jobs import webhooks
from jobs.filters import WebhookDeliveryFilter, WebhookFilter
from jobs.models import Job, Webhook, WebhookDelivery
from jobs.services import (
    delete_webhook,
    retire_previous_secret,
    rotate_webhook_secret,
    save_webhook,
)
from tsubame.api.base import StrictModelSerializer, TeamScopedViewSet, VisibleRelatedField
from tsubame.api.mixins import ServiceWriteMixin


class WebhookSerializer(StrictModelSerializer):
    job = VisibleRelatedField(queryset=Job.objects.all())
    parameter_map = serializers.DictField(
        child=serializers.CharField(max_length=200),
        required=False,
        help_text='Parameter names to dotted paths in the JSON body, e.g. {"REF": "ref"}. A '
        "path missing from a body gives no value (the parameter's default, if any).",
    )
    filter_path = serializers.CharField(
        max_length=200,
        required=False,
        allow_blank=True,
        validators=[webhooks.validate_path],
        help_text="A dotted path; a delivery whose value there is not filter_value starts "
        "nothing (200, filtered out). Empty: no filter.",
    )
    url = serializers.SerializerMethodField(help_text="Where the sender posts deliveries.")
    has_previous_secret = serializers.SerializerMethodField(
        help_text="A rotation is under way: the previous secret is accepted until retired."
    )

    class Meta:
        model = Webhook
        fields = [
            "id",
            "job",
            "name",
            "mode",
            "parameter_map",
            "filter_path",
            "filter_value",
            "rate_limit_per_minute",
            "enabled",
            "url",
            "has_previous_secret",
            "created_at",
        ]

    def get_url(self, webhook: Webhook) -> str:
        return self.context["request"].build_absolute_uri(webhook.receive_path())

    def get_has_previous_secret(self, webhook: Webhook) -> bool:
        return bool(webhook.previous_secret)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        attrs = super().validate(attrs)
        job = attrs.get("job", getattr(self.instance, "job", None))
        if self.instance is not None and job != self.instance.job:
            raise serializers.ValidationError(
                {"job": ["A webhook stays with its job; create one on the other job."]}
            )
        if "parameter_map" in attrs:
            try:
                webhooks.clean_parameter_map(job, attrs["parameter_map"])
            except ValidationError as exc:
                raise serializers.ValidationError({"parameter_map": exc.messages}) from exc
        return attrs


class NewSecretWebhookSerializer(WebhookSerializer):
    secret = serializers.CharField(
        read_only=True,
        help_text="The signing secret. Shown only in this response: store it with the sender.",
    )

    class Meta(WebhookSerializer.Meta):
        fields = [*WebhookSerializer.Meta.fields, "secret"]


class WebhookDeliverySerializer(serializers.ModelSerializer):
    class Meta:
        model = WebhookDelivery
        fields = [
            "id",
            "webhook",
            "delivery_id",
            "received_at",
            "accepted",
            "status_code",
            "reason",
            "execution",
        ]


class WebhookViewSet(
    ServiceWriteMixin, mixins.ListModelMixin, mixins.RetrieveModelMixin, TeamScopedViewSet
):
    """A job's webhooks: URLs that start it when a signed request arrives (managers)."""

    queryset = Webhook.objects.select_related("job")
    serializer_class = WebhookSerializer
    save_service = staticmethod(save_webhook)
    delete_service = staticmethod(delete_webhook)
    owner_field = "job"
    filterset_class = WebhookFilter
    ordering_fields = ["id", "name", "created_at"]
    ordering = ["id"]

    @extend_schema(responses={201: NewSecretWebhookSerializer})
    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        body = self.get_serializer(data=request.data)
        body.is_valid(raise_exception=True)
        self.perform_create(body)
        data = {**body.data, "secret": body.instance.secret}
        return Response(data, status=status.HTTP_201_CREATED)

    @extend_schema(request=None, responses=NewSecretWebhookSerializer)
    @action(
        detail=True,
        methods=["post"],
        url_path="rotate-secret",
        required_perm="jobs.change_webhook",
    )
    def rotate_secret(self, request: Request, pk: str) -> Response:
        """A new secret, returned once; the current one stays accepted until retired."""
        webhook = self.get_object()
        secret = rotate_webhook_secret(webhook, actor=request.user, source=Source.API)
        return Response({**self.get_serializer(webhook).data, "secret": secret})

    @extend_schema(request=None, responses=WebhookSerializer)
    @action(
        detail=True,
        methods=["post"],
        url_path="retire-previous-secret",
        required_perm="jobs.change_webhook",
    )
    def retire_previous_secret(self, request: Request, pk: str) -> Response:
        """Stop accepting the secret that the last rotation replaced."""
        webhook = self.get_object()
        retire_previous_secret(webhook, actor=request.user, source=Source.API)
        return Response(self.get_serializer(webhook).data)


class WebhookDeliveryViewSet(mixins.ListModelMixin, TeamScopedViewSet):
    """Requests to webhooks' URLs, accepted or not: the newest 100 of each webhook."""

    queryset = WebhookDelivery.objects.all()
    serializer_class = WebhookDeliverySerializer
    filterset_class = WebhookDeliveryFilter
    ordering_fields = ["received_at"]
    ordering = ["-received_at", "-id"]

    def get_queryset(self) -> QuerySet[WebhookDelivery]:
        newest_first = [F("received_at").desc(), F("id").desc()]
        rank = Window(RowNumber(), partition_by=F("webhook"), order_by=newest_first)
        newest = super().get_queryset().annotate(rank=rank)
        return newest.filter(rank__lte=webhooks.LISTED_DELIVERIES)
