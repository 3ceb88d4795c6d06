"""A job's webhooks in the web UI: listed on the job's page (jobs/_webhooks.html), changed by
the team's managers here. The secret is shown once, on the page that answers its creation or
rotation; receiving deliveries is jobs.hook_views."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from accounts import policy
from accounts.models import Source
from jobs import webhooks
from jobs.forms import WebhookForm
from jobs.models import Job, Webhook
from jobs.services import (
    delete_webhook,
    retire_previous_secret,
    rotate_webhook_secret,
    save_webhook,
)


def visible_webhook(request: HttpRequest, pk: int, perm: str) -> Webhook:
    webhook = policy.get_visible_or_404(
        Webhook.objects.select_related("job__team"), request.user, pk=pk
    )
    policy.require(request.user, perm, webhook)
    return webhook


def secret_page(request: HttpRequest, webhook: Webhook, secret: str, *, new: bool) -> HttpResponse:
    context = {"webhook": webhook, "secret": secret, "new": new, "section": "jobs"}
    return render(request, "jobs/webhook_secret.html", context)


@login_required
def webhook_add(request: HttpRequest, job_pk: int) -> HttpResponse:
    job = policy.get_visible_or_404(Job.objects.select_related("team"), request.user, pk=job_pk)
    policy.require(request.user, "jobs.add_webhook", job)
    form = WebhookForm(request.POST or None, instance=Webhook(job=job))
    if request.method == "POST" and form.is_valid():
        webhook = save_webhook(
            form.save(commit=False),
            actor=request.user,
            source=Source.UI,
            changed_fields=form.changed_data,
        )
        return secret_page(request, webhook, webhook.secret or "", new=True)
    return render(request, "jobs/webhook_form.html", {"form": form, "job": job, "section": "jobs"})


@login_required
def webhook_edit(request: HttpRequest, pk: int) -> HttpResponse:
    webhook = visible_webhook(request, pk, "jobs.change_webhook")
    form = WebhookForm(request.POST or None, instance=webhook)
    if request.method == "POST" and form.is_valid():
        save_webhook(
            form.save(commit=False),
            actor=request.user,
            source=Source.UI,
            changed_fields=form.changed_data,
        )
        messages.success(request, f"Saved webhook {webhook.name}.")
        return redirect("job-detail", pk=webhook.job_id)
    context = {"form": form, "job": webhook.job, "webhook": webhook, "section": "jobs"}
    return render(request, "jobs/webhook_form.html", context)


@login_required
def webhook_delete(request: HttpRequest, pk: int) -> HttpResponse:
    """GET asks to confirm; POST deletes."""
    webhook = visible_webhook(request, pk, "jobs.delete_webhook")
    if request.method == "POST":
        delete_webhook(webhook, actor=request.user, source=Source.UI)
        messages.success(request, f"Deleted webhook {webhook.name}.")
        return redirect("job-detail", pk=webhook.job_id)
    return render(request, "jobs/webhook_delete.html", {"webhook": webhook, "section": "jobs"})


@login_required
def webhook_rotate(request: HttpRequest, pk: int) -> HttpResponse:
    """GET explains and asks to confirm; POST makes the new secret and shows it once."""
    webhook = visible_webhook(request, pk, "jobs.change_webhook")
    if request.method == "POST":
        secret = rotate_webhook_secret(webhook, actor=request.user, source=Source.UI)
        return secret_page(request, webhook, secret, new=False)
    return render(request, "jobs/webhook_rotate.html", {"webhook": webhook, "section": "jobs"})


@login_required
@require_POST
def webhook_retire(request: HttpRequest, pk: int) -> HttpResponse:
    webhook = visible_webhook(request, pk, "jobs.change_webhook")
    if retire_previous_secret(webhook, actor=request.user, source=Source.UI):
        messages.success(request, f"Webhook {webhook.name} no longer accepts its previous secret.")
    return redirect("job-detail", pk=webhook.job_id)


@login_required
def webhook_deliveries(request: HttpRequest, pk: int) -> HttpResponse:
    webhook = visible_webhook(request, pk, "jobs.view_webhook")
    deliveries = webhook.deliveries.select_related("execution")[: webhooks.LISTED_DELIVERIES]
    context = {"webhook": webhook, "deliveries": deliveries, "section": "jobs"}
    return render(request, "jobs/webhook_deliveries.html", context)
