"""Login with a rate limit per client IP (django-ratelimit): too many attempts get a 429."""
from django.conf import settings
from django.contrib.auth import views as auth_views
from django.utils.decorators import method_decorator
from django_ratelimit.decorators import ratelimit


@method_decorator(ratelimit(key="ip", rate=lambda g, r: settings.LOGIN_RATE, method="POST", block=False),
                  name="post")
class RateLimitedLoginView(auth_views.LoginView):
    def post(self, request, *args, **kwargs):
        if getattr(request, "limited", False):
            form = self.get_form()
            form.add_error(None, "Too many login attempts from your address. Wait a minute and try again.")
            response = self.form_invalid(form)
            response.status_code = 429
            return response
        return super().post(request, *args, **kwargs)
