from django.urls import path

from executions import views

urlpatterns = [
    path("", views.dashboard, name="dashboard"),
    path("running/", views.running, name="running"),
    path("executions/", views.execution_list, name="execution-list"),
    path("executions/<int:pk>/", views.execution_detail, name="execution-detail"),
    path("executions/<int:pk>/facts/", views.execution_facts, name="execution-facts"),
    path("executions/<int:pk>/cancel/", views.execution_cancel, name="execution-cancel"),
    path("executions/<int:pk>/rerun/", views.execution_rerun, name="execution-rerun"),
]
