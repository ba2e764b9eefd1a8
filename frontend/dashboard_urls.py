"""The coordinator's dashboard and the reviewers' pages.

Mounted by config/urls.py as ``path("dashboard/", include("frontend.dashboard_urls"))``.
"""
from django.urls import path

from . import dashboard_views as views

app_name = "dashboard"
urlpatterns = [
    path("", views.index, name="index"),
    path("campaigns/<int:pk>/", views.campaign_dashboard, name="campaign"),
    path("campaigns/<int:pk>/plots/<slug:kind>.png", views.plot_png, name="plot"),
    path("campaigns/<int:pk>/agreement.geojson", views.agreement_geojson, name="agreement-geojson"),
    path("campaigns/<int:pk>/review/", views.review_queue, name="review-queue"),
    path("campaigns/<int:pk>/maps/", views.lcz_maps, name="maps"),
    path("review/<int:block_id>/", views.review_block, name="review"),
]
