from rest_framework.permissions import BasePermission

from annotator import selectors


class IsAdminRole(BasePermission):
    message = "Only admins can see this."

    def has_permission(self, request, view):
        return bool(request.user and request.user.is_authenticated and selectors.is_admin(request.user))


class IsReviewerRole(BasePermission):
    message = "Only reviewers can see this."

    def has_permission(self, request, view):
        return bool(request.user and request.user.is_authenticated and selectors.is_reviewer(request.user))
