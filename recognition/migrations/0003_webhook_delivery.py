from django.db import migrations, models


def mark_untracked_deliveries(apps, schema_editor):
    """Finished recognitions with a webhook from before this migration: their delivery was never recorded, and
    the worker dropped it (unregistered task), so say failed rather than leave them looking pending forever."""
    Recognition = apps.get_model("recognition", "Recognition")
    Recognition.objects.exclude(webhook_url="").exclude(status="queued").update(
        webhook_status="failed", webhook_last_error="not recorded: sent before webhook deliveries were tracked")


class Migration(migrations.Migration):

    dependencies = [
        ("recognition", "0002_reviews"),
    ]

    operations = [
        migrations.AddField(
            model_name="recognition",
            name="webhook_status",
            field=models.CharField(blank=True, choices=[("pending", "Pending"), ("delivered", "Delivered"), ("failed", "Failed")],
                                   help_text="empty: no webhook, or not sent yet", max_length=16),
        ),
        migrations.AddField(
            model_name="recognition",
            name="webhook_attempts",
            field=models.PositiveSmallIntegerField(default=0),
        ),
        migrations.AddField(
            model_name="recognition",
            name="webhook_last_error",
            field=models.TextField(blank=True),
        ),
        migrations.AddField(
            model_name="recognition",
            name="webhook_delivered_at",
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.RunPython(mark_untracked_deliveries, migrations.RunPython.noop),
    ]
