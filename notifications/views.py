"""Notification channels and their rules in the web UI (team managers).

A channel's URL is write-only: pages show it through `destinations.shown_url`. Its signing
secret (http(s):// channels) is shown once, on the page that answers its making: creating the
channel, changing its URL to http(s)://, or rotating it.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from accounts import policy
from accounts.models import Source
from notifications import destinations, services
from notifications.filters import NotificationChannelFilter
from notifications.forms import ChannelPageForm, RuleForm
from notifications.models import Event, NotificationChannel, NotificationRule
from tsubame.pages import filtered_page

LISTED_DELIVERIES = 100
SECTION = "notifications"


@dataclass(frozen=True)
class ShownChannel:
    """A channel as pages show it: where it sends, never its URL."""

    channel: NotificationChannel
    destination: str
    signed: bool

    @classmethod
    def of(cls, channel: NotificationChannel) -> ShownChannel:
        url = channel.url
        return cls(channel, destinations.shown_url(url), destinations.is_signed(url))


def shown_events(rule: NotificationRule) -> list[str]:
    """A rule's events as people read them, N of "N times in a row" filled in."""
    labels = dict(Event.choices) | {
        Event.FAILED_IN_A_ROW: f"Failed {rule.after_failures} times in a row"
    }
    return [labels.get(event, event) for event in rule.events]


def visible_channel(request: HttpRequest, pk: int, perm: str) -> NotificationChannel:
    channel = policy.get_visible_or_404(
        NotificationChannel.objects.select_related("team"), request.user, pk=pk
    )
    policy.require(request.user, perm, channel)
    return channel


def visible_rule(request: HttpRequest, pk: int, perm: str) -> NotificationRule:
    rule = policy.get_visible_or_404(
        NotificationRule.objects.select_related("channel__team", "job"), request.user, pk=pk
    )
    policy.require(request.user, perm, rule)
    return rule


def secret_page(
    request: HttpRequest, channel: NotificationChannel, secret: str, *, rotated: bool
) -> HttpResponse:
    context = {"channel": channel, "secret": secret, "rotated": rotated, "section": SECTION}
    return render(request, "notifications/channel_secret.html", context)


@login_required
def channel_list(request: HttpRequest) -> HttpResponse:
    if not request.user.has_perm("notifications.view_notificationchannel"):
        raise PermissionDenied("Your roles do not allow seeing notification channels.")
    channels = policy.visible(NotificationChannel.objects.select_related("team"), request.user)
    filters, page = filtered_page(request, NotificationChannelFilter, channels)
    return render(
        request,
        "notifications/channel_list.html",
        {
            "filters": filters,
            "page": page,
            "shown": [ShownChannel.of(channel) for channel in page],
            "can_add": request.user.has_perm("notifications.add_notificationchannel"),
            "section": SECTION,
        },
    )


@login_required
def channel_detail(request: HttpRequest, pk: int) -> HttpResponse:
    """The channel, its rules and its delivery log (the newest messages, each attempt)."""
    channel = visible_channel(request, pk, "notifications.view_notificationchannel")
    rules = [(rule, shown_events(rule)) for rule in channel.rules.select_related("job")]
    deliveries = channel.deliveries.prefetch_related("attempt_log")[:LISTED_DELIVERIES]
    context = {
        "channel": channel,
        "shown": ShownChannel.of(channel),
        "rules": rules,
        "deliveries": deliveries,
        "listed_deliveries": LISTED_DELIVERIES,
        "section": SECTION,
    }
    return render(request, "notifications/channel_detail.html", context)


@login_required
def channel_edit(request: HttpRequest, pk: int | None = None) -> HttpResponse:
    channel, teams = policy.for_editing(NotificationChannel.objects.all(), request.user, pk)
    before = channel.signing_secret if channel is not None else None
    form = ChannelPageForm(request.POST or None, instance=channel)
    form.offer_teams(teams)
    if request.method == "POST" and form.is_valid():
        saved = services.save_channel(
            form.save(commit=False),
            actor=request.user,
            source=Source.UI,
            changed_fields=form.changed_fields,
        )
        if saved.signing_secret and saved.signing_secret != before:
            return secret_page(request, saved, saved.signing_secret, rotated=False)
        messages.success(request, f"Saved {saved.name}.")
        return redirect("notification-channel-detail", pk=saved.pk)
    context = {
        "form": form,
        "channel": channel,
        "shown": ShownChannel.of(channel) if channel is not None else None,
        "section": SECTION,
    }
    return render(request, "notifications/channel_form.html", context)


@login_required
def channel_delete(request: HttpRequest, pk: int) -> HttpResponse:
    """GET names what goes with it; POST deletes."""
    channel = visible_channel(request, pk, "notifications.delete_notificationchannel")
    if request.method == "POST":
        services.delete_channel(channel, actor=request.user, source=Source.UI)
        messages.success(request, f"Deleted {channel.name}.")
        return redirect("notification-channel-list")
    context = {
        "channel": channel,
        "rule_count": channel.rules.count(),
        "delivery_count": channel.deliveries.count(),
        "section": SECTION,
    }
    return render(request, "notifications/channel_delete.html", context)


@login_required
@require_POST
def channel_test(request: HttpRequest, pk: int) -> HttpResponse:
    """Send a test message now and say what the destination answered."""
    channel = visible_channel(request, pk, "notifications.change_notificationchannel")
    attempt = services.send_test_message(channel, actor=request.user, source=Source.UI)
    if attempt.ok:
        messages.success(request, f"The test message to {channel.name} arrived: {attempt.answer}")
    else:
        messages.error(
            request, f"The test message to {channel.name} did not arrive: {attempt.answer}"
        )
    return redirect("notification-channel-detail", pk=channel.pk)


@login_required
def channel_rotate(request: HttpRequest, pk: int) -> HttpResponse:
    """GET explains and asks to confirm; POST makes the new secret and shows it once."""
    channel = visible_channel(request, pk, "notifications.change_notificationchannel")
    if not destinations.is_signed(channel.url):
        messages.error(request, "Only an http(s):// channel signs what it sends.")
        return redirect("notification-channel-detail", pk=channel.pk)
    if request.method == "POST":
        secret = services.rotate_signing_secret(channel, actor=request.user, source=Source.UI)
        return secret_page(request, channel, secret, rotated=True)
    return render(
        request, "notifications/channel_rotate.html", {"channel": channel, "section": SECTION}
    )


@login_required
def rule_edit(
    request: HttpRequest, channel_pk: int | None = None, pk: int | None = None
) -> HttpResponse:
    if pk is None:
        channel = visible_channel(request, channel_pk, "notifications.add_notificationrule")
        rule = NotificationRule(channel=channel)
    else:
        rule = visible_rule(request, pk, "notifications.change_notificationrule")
        channel = rule.channel
    form = RuleForm(request.POST or None, instance=rule)
    if request.method == "POST" and form.is_valid():
        services.save_rule(
            form.save(commit=False),
            actor=request.user,
            source=Source.UI,
            changed_fields=form.changed_data,
        )
        messages.success(request, f"Saved the rule {form.instance}.")
        return redirect("notification-channel-detail", pk=channel.pk)
    context = {"form": form, "channel": channel, "rule": rule if pk else None, "section": SECTION}
    return render(request, "notifications/rule_form.html", context)


@login_required
def rule_delete(request: HttpRequest, pk: int) -> HttpResponse:
    """GET asks; POST deletes."""
    rule = visible_rule(request, pk, "notifications.delete_notificationrule")
    if request.method == "POST":
        services.delete_rule(rule, actor=request.user, source=Source.UI)
        messages.success(request, f"Deleted the rule {rule}.")
        return redirect("notification-channel-detail", pk=rule.channel_id)
    return render(request, "notifications/rule_delete.html", {"rule": rule, "section": SECTION})
