from django.urls import path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from annotator import url_converters  # noqa: F401  (registers <id64:...>)

from . import views

urlpatterns = [
    path("schema/", SpectacularAPIView.as_view(), name="schema"),
    path("docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="api-docs"),
    path("classes/", views.ClassesView.as_view(), name="classes"),
    path("campaigns/", views.CampaignListView.as_view(), name="campaigns"),
    path("campaigns/<id64:campaign_id>/", views.CampaignDetailView.as_view(), name="campaign"),
    path("campaigns/<id64:campaign_id>/blocks/", views.CampaignBlocksView.as_view(), name="campaign-blocks"),
    path("campaigns/<id64:campaign_id>/progress/", views.ProgressView.as_view(), name="progress"),
    path("campaigns/<id64:campaign_id>/next/", views.NextAssignmentView.as_view(), name="next-assignment"),
    path("assignments/<id64:assignment_id>/", views.AssignmentView.as_view(), name="assignment"),
    path("assignments/<id64:assignment_id>/annotation/", views.AnnotationSaveView.as_view(), name="annotation"),
    path("campaigns/<id64:campaign_id>/fractions/", views.FractionsLayerView.as_view(), name="fractions"),
    path("campaigns/<id64:campaign_id>/review/", views.ReviewQueueView.as_view(), name="review-queue"),
    path("blocks/<id64:block_id>/review/", views.ReviewBlockView.as_view(), name="review-block"),
    path("blocks/<id64:block_id>/history/", views.BlockHistoryView.as_view(), name="block-history"),
    path("campaigns/<id64:campaign_id>/guidelines/", views.GuidelinesView.as_view(), name="guidelines"),
    path("campaigns/<id64:campaign_id>/guidelines/examples/<id64:block_id>/", views.GuidelineExampleView.as_view(),
         name="guideline-example"),
]
