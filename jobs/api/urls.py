from rest_framework.routers import SimpleRouter

from jobs.api.schedules import ScheduleViewSet
from jobs.api.views import JobViewSet, SecretVariableViewSet

router = SimpleRouter()
router.register("jobs", JobViewSet)
router.register("secret-variables", SecretVariableViewSet)
router.register("schedules", ScheduleViewSet)
