from django.apps import AppConfig


class AnnotatorConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "annotator"
    verbose_name = "LCZ annotation"

    def ready(self):
        from django.db.models.signals import post_migrate

        from . import signals

        post_migrate.connect(_sqlite_wal, sender=self)
        signals.connect()


def _sqlite_wal(sender, using="default", **kwargs):
    """The embedded SQLite/SpatiaLite file in WAL mode (persistent): readers never block the writer.
    Done right after migrate, when no other connection holds the file."""
    from django.db import connections

    connection = connections[using]
    if connection.vendor == "sqlite" and not connection.settings_dict["NAME"].startswith(("file:", ":memory:")):
        with connection.cursor() as cursor:
            cursor.execute("PRAGMA journal_mode=WAL")
