from rest_framework.routers import SimpleRouter

from notifications.api.views import (
    DeliveryViewSet,
    NotificationChannelViewSet,
    NotificationRuleViewSet,
)

router = SimpleRouter()
router.register("notification-channels", NotificationChannelViewSet)
router.register("notification-rules", NotificationRuleViewSet)
router.register("notification-deliveries", DeliveryViewSet)
