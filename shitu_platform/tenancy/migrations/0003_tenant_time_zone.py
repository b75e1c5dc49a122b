from django.db import migrations, models

import shitu_platform.tenancy.models


class Migration(migrations.Migration):

    dependencies = [
        ("tenancy", "0002_quotas"),
    ]

    operations = [
        migrations.AlterModelOptions(name="apikey", options={"ordering": ["-created_at"], "verbose_name": "API key"}),
        migrations.AddField(
            model_name="tenant",
            name="time_zone",
            field=models.CharField(
                default="UTC", help_text="IANA name, e.g. Asia/Shanghai: the dashboard shows times in it", max_length=64,
                validators=[shitu_platform.tenancy.models.validate_time_zone],
            ),
        ),
    ]
