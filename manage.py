#!/usr/bin/env python
"""Django's command-line utility for lcz-annotator.

A missing or bad setting ends the command with one line on stderr saying what to set (exit 1),
never a traceback. Help (`help`, `--help`, no command) needs no settings: without them it is
shown on the development defaults (nothing is opened or served).
"""
import os
import sys

HELP = {"help", "--help", "-h", "--version", "version"}


def asks_for_help(args: list[str]) -> bool:
    return not args or args[0] in HELP or "--help" in args or "-h" in args


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    from django.conf import settings
    from django.core.exceptions import ImproperlyConfigured
    from django.core.management import execute_from_command_line

    try:
        try:
            settings.INSTALLED_APPS  # loads the settings: a missing one raises here
        except ImproperlyConfigured:
            if not asks_for_help(sys.argv[1:]):
                raise
            os.environ["DJANGO_DEBUG"] = "1"  # the settings module is loaded again on next use
        execute_from_command_line(sys.argv)
    except ImproperlyConfigured as exc:
        sys.stderr.write(f"error: {str(exc).rstrip('.')}\n")
        sys.exit(1)


if __name__ == "__main__":
    main()
