from django.urls import path

from annotator import url_converters  # noqa: F401  (registers <id64:...>)

from . import views

app_name = "frontend"
urlpatterns = [
    path("", views.home, name="home"),
    path("campaigns/<id64:pk>/", views.campaign_overview, name="campaign"),
    path("campaigns/<id64:pk>/work/", views.workspace, name="workspace"),
]
