from django.contrib import admin
from django.templatetags.static import static
from django.urls import include, path
from django.views.generic import RedirectView
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView
from rest_framework.permissions import AllowAny
from rest_framework.routers import APIRootView

from accounts.api.urls import router as accounts_router
from executions.api.urls import router as executions_router
from jobs import hook_views
from jobs.api.urls import router as jobs_router
from notifications.api.urls import router as notifications_router
from servers.api.urls import router as servers_router
from tsubame import health, metrics

API_ROUTERS = [
    accounts_router,
    servers_router,
    jobs_router,
    executions_router,
    notifications_router,
]

# /api/v1/ lists each resource's URL (and the schema and its docs). It names nothing the
# public schema does not, so it needs no login, like the schema itself.
api_root = APIRootView.as_view(
    api_root_dict={
        prefix: f"{basename}-list"
        for router in API_ROUTERS
        for prefix, _, basename in router.registry
    }
    | {"schema": "schema", "docs": "docs"},
    permission_classes=[AllowAny],
)

api_urlpatterns = [
    path("", api_root, name="root"),
    # Routed from the same list the root is built from: a resource cannot be one and not
    # the other.
    *(url for router in API_ROUTERS for url in router.urls),
    path("schema/", SpectacularAPIView.as_view(), name="schema"),
    path("docs/", SpectacularSwaggerView.as_view(url_name="api:schema"), name="docs"),
]

urlpatterns = [
    # Browsers ask for /favicon.ico on pages without a <link rel="icon"> (JSON, the API).
    path("favicon.ico", RedirectView.as_view(url=static("tsubame/favicon.svg"), permanent=True)),
    path("", include("executions.urls")),
    path("", include("accounts.urls")),
    path("servers/", include("servers.urls")),
    path("jobs/", include("jobs.urls")),
    path("notifications/", include("notifications.urls")),
    path("admin/", admin.site.urls),
    path("hooks/<str:key>/", hook_views.receive, name="webhook-receive"),
    # Where Prometheus and orchestrators look by convention: no trailing slash.
    path("metrics", metrics.metrics, name="metrics"),
    path("healthz", health.healthz, name="healthz"),
    path("readyz", health.readyz, name="readyz"),
    # Namespaced: the router's names (server-list, ...) would otherwise shadow the UI's.
    path("api/v1/", include((api_urlpatterns, "api"))),
]
