"""manage.py set_guidelines CAMPAIGN FILE.md: the campaign's guidelines (Markdown) from a file."""
import sys
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from annotator import guidelines

from ._common import campaign_or_error


class Command(BaseCommand):
    help = ("Set a campaign's guidelines from a Markdown file (UTF-8; '-' reads stdin); shown in the workspace's "
            "guidelines panel. " + guidelines.SUPPORTED_MARKDOWN)

    stealth_options = ("stdin",)

    def add_arguments(self, parser):
        parser.add_argument("campaign", help="the campaign's name")
        parser.add_argument("file", help="a Markdown file, or - for stdin")

    def handle(self, *args, **o):
        campaign = campaign_or_error(o["campaign"])
        try:
            if o["file"] == "-":
                text = (o.get("stdin") or sys.stdin).read()
            else:
                text = Path(o["file"]).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise CommandError(f"cannot read {o['file']}: {exc}") from None
        try:
            changed = guidelines.set_guidelines(campaign, text)
        except guidelines.GuidelinesError as exc:
            raise CommandError(f"{exc}; nothing changed.") from None
        rendered = guidelines.render_guidelines(text)
        self.stdout.write(f"{campaign.name!r}: guidelines {'set' if changed else 'unchanged'} "
                          f"({len(text):,} characters, {len(rendered):,} of HTML).")
