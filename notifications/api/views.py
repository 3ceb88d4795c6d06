"""Notifications in the API (managers): `/api/v1/notification-channels/`,
`/api/v1/notification-rules/` and the delivery log, `/api/v1/notification-deliveries/`.

A channel's URL is write-only. Its signing secret (http(s):// channels) is in two responses
only: the one that made it (creating the channel, or changing its URL to http(s)://) and the
one that rotated it.
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from drf_spectacular.utils import extend_schema
from rest_framework import mixins, serializers, status
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from accounts.models import Source, Team
from jobs.models import Job
from notifications import destinations, services
from notifications.filters import DeliveryFilter, NotificationChannelFilter, NotificationRuleFilter
from notifications.models import (
    Delivery,
    DeliveryAttempt,
    Event,
    NotificationChannel,
    NotificationRule,
)
from tsubame.api.base import (
    StrictModelSerializer,
    StrictSerializer,
    TeamScopedViewSet,
    VisibleRelatedField,
)
from tsubame.api.mixins import ServiceWriteMixin


def _validate_url(url: str) -> str:
    try:
        destinations.validate_url(url)
    except ValidationError as exc:
        raise serializers.ValidationError(exc.messages) from exc
    return url


class NotificationChannelSerializer(StrictModelSerializer):
    team = VisibleRelatedField(queryset=Team.objects.all())
    url = serializers.CharField(
        write_only=True,
        max_length=2000,
        validators=[_validate_url],
        help_text="An apprise URL (mailto://, slack://, discord://, msteams://, tgram://, "
        "ntfy://, json://, ...) or an http(s):// URL that receives signed JSON. Write-only: "
        "required to create, omitted to keep it when changing.",
    )
    destination = serializers.SerializerMethodField(
        help_text="The URL with its tokens and passwords hidden."
    )
    signed = serializers.SerializerMethodField(
        help_text="Sends JSON signed with the Standard Webhooks scheme (an http(s):// URL)."
    )

    class Meta:
        model = NotificationChannel
        fields = [
            "id",
            "team",
            "name",
            "url",
            "destination",
            "signed",
            "enabled",
            "failing_since",
            "last_error",
            "created_at",
        ]
        read_only_fields = ["failing_since", "last_error"]

    def get_destination(self, channel: NotificationChannel) -> str:
        return destinations.shown_url(channel.url)

    def get_signed(self, channel: NotificationChannel) -> bool:
        return destinations.is_signed(channel.url)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        attrs = super().validate(attrs)
        if self.instance is None and "url" not in attrs:
            raise serializers.ValidationError({"url": ["This field is required."]})
        # Its rules name jobs of its team, and its log runs of them.
        if (
            self.instance is not None
            and attrs.get("team", self.instance.team) != self.instance.team
        ):
            raise serializers.ValidationError(
                {"team": ["A channel stays with its team; create one in the other team."]}
            )
        return attrs


class NewSecretChannelSerializer(NotificationChannelSerializer):
    signing_secret = serializers.CharField(
        read_only=True,
        help_text="Present when this response made the secret: store it with the receiver.",
    )

    class Meta(NotificationChannelSerializer.Meta):
        fields = [*NotificationChannelSerializer.Meta.fields, "signing_secret"]


class AttemptSerializer(serializers.ModelSerializer):
    class Meta:
        model = DeliveryAttempt
        fields = ["number", "started_at", "finished_at", "ok", "answer"]


class TestResultSerializer(StrictSerializer):
    ok = serializers.BooleanField()
    answer = serializers.CharField()
    delivery = serializers.IntegerField()


class NotificationChannelViewSet(
    ServiceWriteMixin, mixins.ListModelMixin, mixins.RetrieveModelMixin, TeamScopedViewSet
):
    """A team's notification channels (managers)."""

    queryset = NotificationChannel.objects.select_related("team")
    serializer_class = NotificationChannelSerializer
    save_service = staticmethod(services.save_channel)
    delete_service = staticmethod(services.delete_channel)
    filterset_class = NotificationChannelFilter
    ordering_fields = ["id", "name", "created_at"]
    ordering = ["id"]

    def _with_new_secret(self, channel: NotificationChannel, before: str | None) -> dict:
        data = dict(self.get_serializer(channel).data)
        if channel.signing_secret and channel.signing_secret != before:
            data["signing_secret"] = channel.signing_secret
        return data

    @extend_schema(responses={201: NewSecretChannelSerializer})
    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        body = self.get_serializer(data=request.data)
        body.is_valid(raise_exception=True)
        self.perform_create(body)
        return Response(self._with_new_secret(body.instance, None), status=status.HTTP_201_CREATED)

    @extend_schema(responses=NewSecretChannelSerializer)
    def update(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        channel = self.get_object()
        before = channel.signing_secret
        body = self.get_serializer(channel, data=request.data, partial=kwargs.get("partial", False))
        body.is_valid(raise_exception=True)
        self.perform_update(body)
        return Response(self._with_new_secret(body.instance, before))

    @extend_schema(request=None, responses=TestResultSerializer)
    @action(detail=True, methods=["post"], required_perm="notifications.change_notificationchannel")
    def test(self, request: Request, pk: str) -> Response:
        """Send a test message now; the answer says whether it arrived and what the
        destination said (it is in the delivery log too)."""
        channel = self.get_object()
        made = services.send_test_message(channel, actor=request.user, source=Source.API)
        return Response({"ok": bool(made.ok), "answer": made.answer, "delivery": made.delivery_id})

    @extend_schema(request=None, responses=NewSecretChannelSerializer)
    @action(
        detail=True,
        methods=["post"],
        url_path="rotate-secret",
        required_perm="notifications.change_notificationchannel",
    )
    def rotate_secret(self, request: Request, pk: str) -> Response:
        """A new signing secret, returned once; the previous one stops signing at once."""
        channel = self.get_object()
        if not destinations.is_signed(channel.url):
            raise serializers.ValidationError(
                {"url": ["Only an http(s):// channel signs what it sends."]}
            )
        secret = services.rotate_signing_secret(channel, actor=request.user, source=Source.API)
        return Response({**self.get_serializer(channel).data, "signing_secret": secret})


class NotificationRuleSerializer(StrictModelSerializer):
    channel = VisibleRelatedField(queryset=NotificationChannel.objects.all())
    job = VisibleRelatedField(
        queryset=Job.objects.all(),
        allow_null=True,
        required=False,
        help_text="A job of the channel's team; null: the team's default, for each job "
        "that has no rule of its own.",
    )
    events = serializers.ListField(
        child=serializers.ChoiceField(choices=Event.choices),
        allow_empty=True,
        help_text="failed (also timed out and lost, after the last attempt), succeeded, "
        "recovered (first success after a failure), started, cancelled, failed_in_a_row "
        "(the after_failures-th failure in a row, once per run of failures), missed and "
        "skipped (a schedule's runs that did not start). None: the job's runs are muted.",
    )

    class Meta:
        model = NotificationRule
        fields = ["id", "channel", "job", "events", "after_failures", "enabled", "created_at"]

    def validate_events(self, events: list[str]) -> list[str]:
        return sorted(set(events), key=Event.values.index)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        attrs = super().validate(attrs)
        channel = attrs.get("channel", getattr(self.instance, "channel", None))
        job = attrs.get("job", getattr(self.instance, "job", None))
        if job is not None and channel is not None and job.team_id != channel.team_id:
            raise serializers.ValidationError({"job": ["The job is not of the channel's team."]})
        if self.instance is not None and channel != self.instance.channel:
            raise serializers.ValidationError(
                {"channel": ["A rule stays with its channel; create one on the other channel."]}
            )
        return attrs


class NotificationRuleViewSet(
    ServiceWriteMixin, mixins.ListModelMixin, mixins.RetrieveModelMixin, TeamScopedViewSet
):
    """Which events of which jobs each channel hears (managers)."""

    queryset = NotificationRule.objects.select_related("channel", "job")
    serializer_class = NotificationRuleSerializer
    save_service = staticmethod(services.save_rule)
    delete_service = staticmethod(services.delete_rule)
    owner_field = "channel"
    filterset_class = NotificationRuleFilter
    ordering_fields = ["id", "created_at"]
    ordering = ["id"]


class DeliverySerializer(serializers.ModelSerializer):
    attempt_log = AttemptSerializer(many=True, read_only=True)

    class Meta:
        model = Delivery
        fields = [
            "id",
            "channel",
            "execution",
            "event",
            "outcome",
            "status",
            "attempts",
            "next_attempt_at",
            "created_at",
            "sent_at",
            "title",
            "body",
            "attempt_log",
        ]


class DeliveryViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, TeamScopedViewSet):
    """The delivery log: every message to a channel and each attempt at sending it."""

    queryset = Delivery.objects.prefetch_related("attempt_log")
    serializer_class = DeliverySerializer
    filterset_class = DeliveryFilter
    ordering_fields = ["created_at", "id"]
    ordering = ["-created_at", "-id"]
