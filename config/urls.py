from django.contrib import admin
from django.urls import include, path

from annotator import url_converters  # noqa: F401  registers <id64:...> before any route uses it
from frontend import download_views
from frontend.auth_views import RateLimitedAdminAuthenticationForm, RateLimitedLoginView, admin_login

# The admin's login page counts against the same login rate limits as the site's (and its form
# refuses, without checking the password, a request that is over them).
admin.site.login_form = RateLimitedAdminAuthenticationForm

# No route serves MEDIA_ROOT, not even with DEBUG on: imagery only through the member-checked
# tile views, generated files only through the admins' download view.
urlpatterns = [
    path("admin/login/", admin_login),
    path("admin/", admin.site.urls),
    path("accounts/login/", RateLimitedLoginView.as_view(), name="login"),
    path("accounts/", include("django.contrib.auth.urls")),
    path("api/", include("annotator.api.urls")),
    path("tiles/", include("annotator.tile_urls")),
    path("dashboard/", include("frontend.dashboard_urls")),
    path("downloads/campaigns/<id64:pk>/<path:relpath>", download_views.campaign_file, name="campaign-download"),
    path("", include("frontend.urls")),
]
