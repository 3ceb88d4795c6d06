from rest_framework.routers import SimpleRouter

from servers.api.views import ServerViewSet

router = SimpleRouter()
router.register("servers", ServerViewSet)
