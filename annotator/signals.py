"""Revocation that holds whichever way a membership or account changes (services, admin, shell):
an interpreter taken off a campaign, or a deactivated account, keeps no open assignment."""
from __future__ import annotations

from django.contrib.auth.models import User
from django.db.models.signals import post_delete, post_save


def _membership_deleted(sender, instance, origin=None, **kwargs):
    from django.db.models import QuerySet

    from . import services
    from .models import Membership

    direct = isinstance(origin, Membership) or (isinstance(origin, QuerySet) and origin.model is Membership)
    if direct and instance.role == Membership.Role.INTERPRETER:  # not when a campaign or user is deleted
        services.revoke_open_assignments(instance.user, campaign=instance.campaign,
                                         reason="removed from the campaign")


def _user_saved(sender, instance: User, created: bool, **kwargs):
    if not created and not instance.is_active:
        from . import services

        services.revoke_open_assignments(instance, reason="account deactivated")


def connect() -> None:
    from .models import Membership

    post_delete.connect(_membership_deleted, sender=Membership, dispatch_uid="annotator.membership_deleted")
    post_save.connect(_user_saved, sender=User, dispatch_uid="annotator.user_saved")
