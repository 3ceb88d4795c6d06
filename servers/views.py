from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from accounts import policy
from accounts.models import Source
from executions.models import HostRun
from servers import services, ssh
from servers.filters import ServerFilter
from servers.forms import ServerPageForm
from servers.models import Server
from tsubame.pages import Paginator, filtered_page


@login_required
def server_list(request: HttpRequest) -> HttpResponse:
    servers = policy.visible(
        Server.objects.select_related("team").prefetch_related("tags"), request.user
    )
    filters, page = filtered_page(request, ServerFilter, servers)
    return render(
        request,
        "servers/server_list.html",
        {
            "filters": filters,
            "page": page,
            "tags": services.visible_tags(request.user),
            "can_add": request.user.has_perm("servers.add_server"),
            "section": "servers",
        },
    )


@login_required
def server_detail(request: HttpRequest, pk: int) -> HttpResponse:
    server = policy.get_visible_or_404(
        Server.objects.select_related("team").prefetch_related("tags"), request.user, pk=pk
    )
    # Runs are seen by whoever may see their execution: those from before the server changed
    # team stay with the team they ran in.
    runs = policy.visible(
        HostRun.objects.filter(server=server)
        .select_related("execution")
        .defer("execution__script")
        .order_by("-id"),
        request.user,
    )
    page = Paginator(runs, 25).get_page(request.GET.get("page"))
    return render(
        request,
        "servers/server_detail.html",
        {"server": server, "page": page, "section": "servers"},
    )


@login_required
def server_edit(request: HttpRequest, pk: int | None = None) -> HttpResponse:
    server, teams = policy.for_editing(Server.objects.all(), request.user, pk)
    form = ServerPageForm(request.POST or None, request.FILES or None, instance=server)
    form.offer_teams(teams)
    if request.method == "POST" and form.is_valid():
        saved = services.save_server(
            form.save(commit=False),
            actor=request.user,
            source=Source.UI,
            tags=form.cleaned_data["tags"],
            changed_fields=form.changed_data,
        )
        messages.success(request, f"Saved {saved.name}.")
        return redirect("server-list")
    return render(
        request,
        "servers/server_form.html",
        {
            "form": form,
            "server": server,
            "known_tags": services.visible_tags(request.user),
            "section": "servers",
        },
    )


@login_required
def server_delete(request: HttpRequest, pk: int) -> HttpResponse:
    """GET names the jobs and the runs that deleting touches; POST deletes."""
    server = policy.get_visible_or_404(Server.objects.select_related("team"), request.user, pk=pk)
    policy.require(request.user, "servers.delete_server", server)
    if request.method == "POST":
        services.delete_server(server, actor=request.user, source=Source.UI)
        messages.success(request, f"Deleted {server.name}.")
        return redirect("server-list")
    return render(
        request,
        "servers/server_delete.html",
        {
            "server": server,
            "effects": services.deletion_effects(server, request.user),
            "section": "servers",
        },
    )


@login_required
@require_POST
def server_test(request: HttpRequest, pk: int) -> HttpResponse:
    server = policy.get_visible_or_404(Server.objects.all(), request.user, pk=pk)
    policy.require(request.user, "servers.test_connection", server)
    check = services.check_connection(server)
    latency = f" in {check.latency_ms:.0f} ms" if check.latency_ms is not None else ""
    level = messages.SUCCESS if check.status == "ok" else messages.ERROR
    messages.add_message(request, level, f"{server.name}: {check.status}{latency}. {check.message}")
    return redirect("server-list")


@login_required
def server_trust(request: HttpRequest, pk: int) -> HttpResponse:
    """GET shows the fingerprint the server offers; POST trusts it if it is still the same."""
    server = policy.get_visible_or_404(Server.objects.all(), request.user, pk=pk)
    policy.require(request.user, "servers.trust_host_key", server)
    if request.method == "POST":
        try:
            key = services.trust_offered_host_key(
                server, request.POST.get("fingerprint", ""), by=request.user, source=Source.UI
            )
        except (ssh.SSHError, services.FingerprintMismatch) as exc:
            messages.error(request, f"{server.name}: {exc}")
        else:
            messages.success(request, f"{server.name}: trusted {key.fingerprint}")
        return redirect("server-list")
    try:
        offered, error = ssh.fetch_host_key(server.host, server.port), None
    except ssh.SSHError as exc:
        offered, error = None, str(exc)
    return render(
        request,
        "servers/server_trust.html",
        {"server": server, "offered": offered, "error": error, "section": "servers"},
    )
