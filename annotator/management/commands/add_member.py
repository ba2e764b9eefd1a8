from django.contrib.auth.models import User
from django.core.management.base import BaseCommand, CommandError

from annotator import services
from annotator.models import Membership

from ._common import campaign_or_error


class Command(BaseCommand):
    help = "Add an existing user to a campaign as interpreter or reviewer."

    def add_arguments(self, parser):
        parser.add_argument("username")
        parser.add_argument("--campaign", required=True)
        parser.add_argument("--role", choices=Membership.Role.values, default=Membership.Role.INTERPRETER)

    def handle(self, *args, **o):
        campaign = campaign_or_error(o["campaign"])
        user = User.objects.filter(username=o["username"]).first()
        if user is None:
            raise CommandError(f"user {o['username']!r} does not exist; create it with `manage.py createsuperuser` "
                               "or in the admin.")
        services.add_member(campaign, user, o["role"])
        self.stdout.write(f"{user.username} is {o['role']} on {campaign.name!r}.")
