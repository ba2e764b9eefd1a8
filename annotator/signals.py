"""Revocation that holds whichever way a membership or account changes (services, admin, shell):
an interpreter taken off a campaign, or a deactivated account, keeps no open assignment; a logout,
or any change to an account, ends the account's tile passes (annotator.tile_pass)."""
from __future__ import annotations

from django.contrib.auth.models import User
from django.contrib.auth.signals import user_logged_out
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
    from . import tile_pass

    tile_pass.end_passes(instance.pk)
    if not created and not instance.is_active:
        from . import services

        services.revoke_open_assignments(instance, reason="account deactivated")


def _user_gone(sender, instance: User, **kwargs):
    from . import tile_pass

    tile_pass.end_passes(instance.pk)


def _logged_out(sender, request, user, **kwargs):
    if user is not None:
        from . import tile_pass

        tile_pass.end_passes(user.pk)


def connect() -> None:
    from .models import Membership

    post_delete.connect(_membership_deleted, sender=Membership, dispatch_uid="annotator.membership_deleted")
    post_save.connect(_user_saved, sender=User, dispatch_uid="annotator.user_saved")
    post_delete.connect(_user_gone, sender=User, dispatch_uid="annotator.user_deleted")
    user_logged_out.connect(_logged_out, dispatch_uid="annotator.logged_out")
