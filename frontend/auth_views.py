"""Login rate limits (django-ratelimit) on the site's login page and on the admin's.

Every login POST counts twice, and is refused with a 429 (without checking the password) once
either count is over its limit:
- per account: the submitted username, lowercased (setting LOGIN_RATE);
- per client address, as frontend.client_ip finds it behind trusted proxies (LOGIN_RATE_PER_ADDRESS).
Both pages share the counts, so the admin page is no second door with its own allowance.
"""
from __future__ import annotations

import unicodedata

from django.conf import settings
from django.contrib import admin
from django.contrib.admin.forms import AdminAuthenticationForm
from django.contrib.auth import views as auth_views
from django.contrib.auth.forms import AuthenticationForm
from django.core.exceptions import ValidationError
from django_ratelimit.core import is_ratelimited

from frontend.client_ip import client_network

LOCKED_OUT = "Too many login attempts. Wait a minute and try again."


def _account(group, request) -> str:
    username = request.POST.get("username", "")
    return unicodedata.normalize("NFKC", username).strip().lower()


def _address(group, request) -> str:
    return client_network(request)


def login_limited(request) -> bool:
    """Count this login POST against both limits; True when either is exceeded. Both are counted
    even when the first is already over, so neither can be used to spare the other."""
    if request.method != "POST":
        return False
    over = [
        is_ratelimited(request, group="login-account", key=_account,
                       rate=lambda g, r: settings.LOGIN_RATE, method="POST", increment=True),
        is_ratelimited(request, group="login-address", key=_address,
                       rate=lambda g, r: settings.LOGIN_RATE_PER_ADDRESS, method="POST", increment=True),
    ]
    return any(over)


class _RefuseWhenLimited:
    """Makes the form invalid, before any password is checked, when the request is over a limit."""

    def clean(self):
        if getattr(self.request, "login_limited", False):
            raise ValidationError(LOCKED_OUT, code="rate_limited")
        return super().clean()


class RateLimitedAuthenticationForm(_RefuseWhenLimited, AuthenticationForm):
    pass


class RateLimitedAdminAuthenticationForm(_RefuseWhenLimited, AdminAuthenticationForm):
    pass


def _limit(view, request, *args, **kwargs):
    request.login_limited = login_limited(request)
    response = view(request, *args, **kwargs)
    if request.login_limited:
        response.status_code = 429
    return response


class RateLimitedLoginView(auth_views.LoginView):
    authentication_form = RateLimitedAuthenticationForm

    def post(self, request, *args, **kwargs):
        return _limit(super().post, request, *args, **kwargs)


def admin_login(request, extra_context=None):
    """admin.site.login with the same limits; config/urls.py mounts it at admin/login/ and sets
    admin.site.login_form to RateLimitedAdminAuthenticationForm."""
    return _limit(admin.site.login, request, extra_context)
