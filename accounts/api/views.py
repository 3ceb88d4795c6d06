from __future__ import annotations

from django.core.exceptions import ValidationError as DjangoValidationError
from django.db.models import Prefetch, QuerySet
from drf_spectacular.utils import extend_schema
from rest_framework import mixins, permissions, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import NotFound
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.serializers import BaseSerializer

from accounts import services
from accounts.api.serializers import (
    ApiTokenSerializer,
    AuditEventSerializer,
    MembershipChangeSerializer,
    MembershipSerializer,
    NewApiTokenSerializer,
    TeamSerializer,
    made_with,
)
from accounts.filters import AuditEventFilter
from accounts.models import ApiToken, AuditEvent, Membership, Source, Team
from tsubame.api.base import TeamScopedViewSet


class TeamViewSet(
    mixins.ListModelMixin, mixins.RetrieveModelMixin, mixins.UpdateModelMixin, TeamScopedViewSet
):
    """The teams you belong to, your role in each, (for managers) their members, and their
    retention settings (changed by whoever may change the team)."""

    queryset = Team.objects.all()
    serializer_class = TeamSerializer
    ordering_fields = ["name", "created_at"]
    ordering = ["name"]

    def perform_update(self, serializer: BaseSerializer[Team]) -> None:
        # PolicyPermission checked the object permission, accounts.change_team.
        team, given = serializer.instance, serializer.validated_data
        changed = [name for name, value in given.items() if getattr(team, name) != value]
        for name in changed:
            setattr(team, name, given[name])
        services.save_team(team, actor=self.request.user, source=Source.API, changed_fields=changed)

    def get_queryset(self) -> QuerySet[Team]:
        mine = Membership.objects.filter(user=self.request.user).select_related("role")
        return (
            super()
            .get_queryset()
            .prefetch_related(Prefetch("memberships", queryset=mine, to_attr="my_memberships"))
        )

    def _members(self, team: Team) -> QuerySet[Membership]:
        return team.memberships.select_related("user", "role").order_by("user__username")

    @extend_schema(responses=MembershipSerializer(many=True))
    @action(
        detail=True, methods=["get"], url_path="members", pagination_class=None, filter_backends=[]
    )
    def members(self, request: Request, pk: str) -> Response:
        """The team's members and their roles."""
        return Response(MembershipSerializer(self._members(self.get_object()), many=True).data)

    @extend_schema(request=MembershipSerializer, responses={201: MembershipSerializer})
    @members.mapping.post
    def add_member(self, request: Request, pk: str) -> Response:
        """Add a user to the team with a role (managers)."""
        team = self.get_object()
        self.require("accounts.manage_members", team)
        body = MembershipSerializer(data=request.data, context=self.get_serializer_context())
        body.is_valid(raise_exception=True)
        membership = services.set_membership(
            team,
            body.validated_data["user"],
            body.validated_data["role"],
            actor=request.user,
            source=Source.API,
        )
        return Response(MembershipSerializer(membership).data, status=status.HTTP_201_CREATED)

    @extend_schema(request=MembershipChangeSerializer, responses=MembershipSerializer)
    @action(detail=True, methods=["patch", "delete"], url_path=r"members/(?P<username>[^/\x00]+)")
    def member(self, request: Request, pk: str, username: str) -> Response:
        """Change a member's role, or remove them from the team (managers)."""
        team = self.get_object()
        self.require("accounts.manage_members", team)
        membership = self._members(team).filter(user__username=username).first()
        if membership is None:
            raise NotFound("No such member in this team.")
        if request.method == "DELETE":
            services.remove_membership(membership, actor=request.user, source=Source.API)
            return Response(status=status.HTTP_204_NO_CONTENT)
        body = MembershipChangeSerializer(data=request.data, context=self.get_serializer_context())
        body.is_valid(raise_exception=True)
        membership = services.set_membership(
            team,
            membership.user,
            body.validated_data["role"],
            actor=request.user,
            source=Source.API,
        )
        return Response(MembershipSerializer(membership).data)


class AuditEventViewSet(mixins.ListModelMixin, TeamScopedViewSet):
    """Who created, changed, deleted, ran, cancelled or trusted what (managers, superusers)."""

    queryset = AuditEvent.objects.all()
    serializer_class = AuditEventSerializer
    filterset_class = AuditEventFilter
    ordering_fields = ["at"]
    ordering = ["-at", "-id"]


class ApiTokenViewSet(
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.CreateModelMixin,
    mixins.DestroyModelMixin,
    viewsets.GenericViewSet,
):
    """Your personal API tokens. The token text is returned once, when it is created;
    deleting a token revokes it."""

    queryset = ApiToken.objects.none()  # the model, for the schema; get_queryset filters
    serializer_class = ApiTokenSerializer
    permission_classes = [permissions.IsAuthenticated]
    lookup_value_regex = r"\d+"

    def get_queryset(self) -> QuerySet[ApiToken]:
        return ApiToken.objects.filter(user=self.request.user)

    @extend_schema(request=ApiTokenSerializer, responses={201: NewApiTokenSerializer})
    def create(self, request: Request) -> Response:
        body = ApiTokenSerializer(data=request.data, context=self.get_serializer_context())
        body.is_valid(raise_exception=True)
        token = ApiToken(user=request.user, **body.validated_data)
        try:
            secret = services.issue_token(token, source=Source.API, made_with=made_with(request))
        except DjangoValidationError as exc:  # the expiry: accounts.models.token_expiry
            raise serializers.ValidationError({"expires_at": exc.messages}) from exc
        data = {**ApiTokenSerializer(token).data, "token": secret}
        return Response(data, status=status.HTTP_201_CREATED)

    def perform_destroy(self, instance: ApiToken) -> None:
        services.revoke_token(instance, actor=self.request.user, source=Source.API)
