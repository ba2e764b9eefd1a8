"""The coordinator's dashboard and the reviewers' pages.

Mounted by config/urls.py as ``path("dashboard/", include("frontend.dashboard_urls"))``.
"""
from django.urls import path

from annotator import url_converters  # noqa: F401  (registers <id64:...>)

from . import dashboard_views as views

app_name = "dashboard"
urlpatterns = [
    path("", views.index, name="index"),
    path("campaigns/<id64:pk>/", views.campaign_dashboard, name="campaign"),
    path("campaigns/<id64:pk>/plots/<slug:kind>.png", views.plot_png, name="plot"),
    path("campaigns/<id64:pk>/agreement.geojson", views.agreement_geojson, name="agreement-geojson"),
    path("campaigns/<id64:pk>/review/", views.review_queue, name="review-queue"),
    path("campaigns/<id64:pk>/maps/", views.lcz_maps, name="maps"),
    path("review/<id64:block_id>/", views.review_block, name="review"),
]
