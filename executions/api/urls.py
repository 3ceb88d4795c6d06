from rest_framework.routers import SimpleRouter

from executions.api.views import ExecutionViewSet

router = SimpleRouter()
router.register("executions", ExecutionViewSet)
