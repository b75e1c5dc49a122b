from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('recognition', '0004_detected_object_confidence'),
    ]

    operations = [
        migrations.AddField(
            model_name='detectedobject',
            name='evidence',
            field=models.JSONField(blank=True, help_text="the best match's homography inlier pairs, for drawing (see recognition.evidence); null when not verified geometrically", null=True),
        ),
    ]
