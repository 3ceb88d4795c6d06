from rest_framework.routers import SimpleRouter

from accounts.api.views import ApiTokenViewSet, AuditEventViewSet, TeamViewSet

router = SimpleRouter()
router.register("teams", TeamViewSet)
router.register("audit", AuditEventViewSet)
router.register("tokens", ApiTokenViewSet, basename="apitoken")
