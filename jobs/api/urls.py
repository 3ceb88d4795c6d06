from rest_framework.routers import SimpleRouter

from jobs.api.schedules import ScheduleViewSet
from jobs.api.views import JobViewSet, SecretVariableViewSet
from jobs.api.webhooks import WebhookDeliveryViewSet, WebhookViewSet

router = SimpleRouter()
router.register("jobs", JobViewSet)
router.register("secret-variables", SecretVariableViewSet)
router.register("schedules", ScheduleViewSet)
router.register("webhooks", WebhookViewSet)
router.register("webhook-deliveries", WebhookDeliveryViewSet)
