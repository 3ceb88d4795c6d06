from django.urls import path

from jobs import schedule_views, views, webhook_views

urlpatterns = [
    path("", views.job_list, name="job-list"),
    path("new/", views.job_edit, name="job-add"),
    path("<int:pk>/", views.job_detail, name="job-detail"),
    path("<int:pk>/edit/", views.job_edit, name="job-edit"),
    path("<int:pk>/delete/", views.job_delete, name="job-delete"),
    path("<int:pk>/run/", views.job_run, name="job-run"),
    path("<int:job_pk>/schedules/new/", schedule_views.schedule_edit, name="schedule-add"),
    path("schedules/<int:pk>/edit/", schedule_views.schedule_edit, name="schedule-edit"),
    path("schedules/<int:pk>/toggle/", schedule_views.schedule_toggle, name="schedule-toggle"),
    path("schedules/<int:pk>/delete/", schedule_views.schedule_delete, name="schedule-delete"),
    path("<int:job_pk>/webhooks/new/", webhook_views.webhook_add, name="webhook-add"),
    path("webhooks/<int:pk>/edit/", webhook_views.webhook_edit, name="webhook-edit"),
    path("webhooks/<int:pk>/delete/", webhook_views.webhook_delete, name="webhook-delete"),
    path("webhooks/<int:pk>/rotate/", webhook_views.webhook_rotate, name="webhook-rotate"),
    path("webhooks/<int:pk>/retire/", webhook_views.webhook_retire, name="webhook-retire"),
    path(
        "webhooks/<int:pk>/deliveries/",
        webhook_views.webhook_deliveries,
        name="webhook-deliveries",
    ),
    path("secret-variables/", views.secret_variable_list, name="secret-variable-list"),
    path("secret-variables/new/", views.secret_variable_edit, name="secret-variable-add"),
    path(
        "secret-variables/<int:pk>/edit/", views.secret_variable_edit, name="secret-variable-edit"
    ),
    path(
        "secret-variables/<int:pk>/delete/",
        views.secret_variable_delete,
        name="secret-variable-delete",
    ),
]
