from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

api_urlpatterns = [
    path("", include("accounts.api.urls")),
    path("", include("servers.api.urls")),
    path("", include("jobs.api.urls")),
    path("", include("executions.api.urls")),
    path("schema/", SpectacularAPIView.as_view(), name="schema"),
    path("docs/", SpectacularSwaggerView.as_view(url_name="api:schema"), name="docs"),
]

urlpatterns = [
    path("", include("executions.urls")),
    path("", include("accounts.urls")),
    path("servers/", include("servers.urls")),
    path("jobs/", include("jobs.urls")),
    path("admin/", admin.site.urls),
    # Namespaced: the router's names (server-list, ...) would otherwise shadow the UI's.
    path("api/v1/", include((api_urlpatterns, "api"))),
]
