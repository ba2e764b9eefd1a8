from django.conf import settings
from django.conf.urls.static import static
from django.contrib import admin
from django.urls import include, path

from frontend.auth_views import RateLimitedLoginView

urlpatterns = [
    path("admin/", admin.site.urls),
    path("accounts/login/", RateLimitedLoginView.as_view(), name="login"),
    path("accounts/", include("django.contrib.auth.urls")),
    path("api/", include("annotator.api.urls")),
    path("tiles/", include("annotator.tile_urls")),
    path("dashboard/", include("frontend.dashboard_urls")),
    path("", include("frontend.urls")),
]
if settings.DEBUG:
    urlpatterns += static(settings.MEDIA_URL, document_root=settings.MEDIA_ROOT)
