import secrets
import sys

from django.contrib.auth.models import User
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from annotator import services
from annotator.models import Membership

from ._common import campaign_or_error


class Command(BaseCommand):
    help = ("Add a user to a campaign as interpreter or reviewer. With --create, make the account first: a "
            "normal account (neither staff nor superuser) in the role's group, whose password is read from "
            "stdin (--password-stdin) or generated and printed once.")
    stealth_options = ("stdin",)

    def add_arguments(self, parser):
        parser.add_argument("username")
        parser.add_argument("--campaign", required=True)
        parser.add_argument("--role", choices=Membership.Role.values, default=Membership.Role.INTERPRETER)
        parser.add_argument("--create", action="store_true",
                            help="Create the account first (refused if the username exists).")
        parser.add_argument("--password-stdin", action="store_true",
                            help="With --create: the password is the first line of stdin (default: a "
                                 "generated one, printed once).")
        parser.add_argument("--email", default="", help="With --create: the account's e-mail address.")

    def handle(self, *args, **o):
        if (o["password_stdin"] or o["email"]) and not o["create"]:
            raise CommandError("--password-stdin and --email go with --create (a new account).")
        campaign = campaign_or_error(o["campaign"])
        username, role = o["username"], o["role"]
        if not o["create"]:
            user = User.objects.filter(username=username).first()
            if user is None:
                raise CommandError(f"user {username!r} does not exist; create it with `manage.py add_member "
                                   f"{username} --campaign ... --create`.")
            services.add_member(campaign, user, role)
            self.stdout.write(f"{user.username} is {role} on {campaign.name!r}.")
            return
        given = o["password_stdin"]
        password = self._password_from(o.get("stdin") or sys.stdin, username) if given else secrets.token_urlsafe(16)
        try:
            with transaction.atomic():
                user = services.create_user(username, password, role=role, email=o["email"])
                services.add_member(campaign, user, role)
        except services.UserExists as exc:
            raise CommandError(f"{exc} Nothing was changed; to add the existing account, leave out --create.") \
                from None
        self.stdout.write(f"Created {user.username}: {role} on {campaign.name!r}.")
        if not given:
            self.stdout.write(f"Password (shown once, pass it on now): {password}")

    @staticmethod
    def _password_from(stream, username: str) -> str:
        password = stream.readline().rstrip("\r\n")
        if not password:
            raise CommandError("--password-stdin: stdin gave no password (its first line is the password).")
        try:
            validate_password(password, User(username=username))
        except ValidationError as exc:
            raise CommandError(f"--password-stdin: {' '.join(exc.messages)} Nothing was changed.") from None
        return password
