# Two branches written at the same time: the gallery-health table and the unscoped default manager.
from django.db import migrations


class Migration(migrations.Migration):

    dependencies = [
        ("galleries", "0007_gallery_health"),
        ("galleries", "0007_unscoped_default_manager"),
    ]

    operations = []
