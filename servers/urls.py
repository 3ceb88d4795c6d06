from django.urls import path

from servers import views

urlpatterns = [
    path("", views.server_list, name="server-list"),
    path("new/", views.server_edit, name="server-add"),
    path("<int:pk>/", views.server_detail, name="server-detail"),
    path("<int:pk>/edit/", views.server_edit, name="server-edit"),
    path("<int:pk>/delete/", views.server_delete, name="server-delete"),
    path("<int:pk>/test/", views.server_test, name="server-test"),
    path("<int:pk>/trust/", views.server_trust, name="server-trust"),
]
