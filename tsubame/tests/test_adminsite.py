import pytest
from django.urls import NoReverseMatch, reverse

pytestmark = pytest.mark.django_db


def test_django_q_schedules_do_not_pose_as_job_schedules(admin_client):
    index = admin_client.get(reverse("admin:index"))
    names = {m["name"] for app in index.context["app_list"] for m in app["models"]}
    assert "Scheduled tasks" not in names
    assert {"Successful tasks", "Failed tasks"} <= names  # the queue's own records stay
    queue = next(app for app in index.context["app_list"] if app["app_label"] == "django_q")
    assert queue["name"] == "Task queue"
    with pytest.raises(NoReverseMatch):
        reverse("admin:django_q_schedule_changelist")
