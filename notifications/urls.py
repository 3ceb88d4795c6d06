from django.urls import path

from notifications import views

urlpatterns = [
    path("", views.channel_list, name="notification-channel-list"),
    path("new/", views.channel_edit, name="notification-channel-add"),
    path("<int:pk>/", views.channel_detail, name="notification-channel-detail"),
    path("<int:pk>/edit/", views.channel_edit, name="notification-channel-edit"),
    path("<int:pk>/delete/", views.channel_delete, name="notification-channel-delete"),
    path("<int:pk>/test/", views.channel_test, name="notification-channel-test"),
    path("<int:pk>/rotate/", views.channel_rotate, name="notification-channel-rotate"),
    path("<int:channel_pk>/rules/new/", views.rule_edit, name="notification-rule-add"),
    path("rules/<int:pk>/edit/", views.rule_edit, name="notification-rule-edit"),
    path("rules/<int:pk>/delete/", views.rule_delete, name="notification-rule-delete"),
]
