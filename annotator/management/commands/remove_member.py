from django.contrib.auth.models import User
from django.core.management.base import BaseCommand, CommandError

from annotator import services
from annotator.models import Membership

from ._common import campaign_or_error


class Command(BaseCommand):
    help = ("Take a user off a campaign (as interpreter or reviewer). An interpreter's open assignments are "
            "revoked: their saves are refused from then on; what they submitted stays. --deactivate also "
            "disables the account everywhere.")

    def add_arguments(self, parser):
        parser.add_argument("username")
        parser.add_argument("--campaign", required=True)
        parser.add_argument("--role", choices=Membership.Role.values, default=Membership.Role.INTERPRETER)
        parser.add_argument("--deactivate", action="store_true", help="also deactivate the account (all campaigns)")

    def handle(self, *args, **o):
        campaign = campaign_or_error(o["campaign"])
        user = User.objects.filter(username=o["username"]).first()
        if user is None:
            raise CommandError(f"user {o['username']!r} does not exist.")
        if not Membership.objects.filter(campaign=campaign, user=user, role=o["role"]).exists() and not o["deactivate"]:
            raise CommandError(f"{user.username} is not {o['role']} on {campaign.name!r}; nothing changed.")
        revoked = services.remove_member(campaign, user, o["role"])
        if o["deactivate"]:
            revoked += services.deactivate_user(user)
        self.stdout.write(f"{user.username} is no longer {o['role']} on {campaign.name!r}"
                          f"{' and is deactivated' if o['deactivate'] else ''}; {revoked} open assignment(s) revoked, "
                          "submitted splits kept.")
