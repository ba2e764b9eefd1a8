from django.urls import path

from . import views

app_name = "frontend"
urlpatterns = [
    path("", views.home, name="home"),
    path("campaigns/<int:pk>/", views.campaign_overview, name="campaign"),
    path("campaigns/<int:pk>/work/", views.workspace, name="workspace"),
]
