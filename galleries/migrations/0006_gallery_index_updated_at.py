from django.db import migrations, models

# Galleries changed before the field existed: the newest vector is the best trace of their last change left
# (a removal leaves none), else the gallery's own creation.
BACKFILL = """
UPDATE galleries_gallery AS g SET index_updated_at = COALESCE(
    (SELECT max(e.created_at) FROM galleries_embedding AS e WHERE e.gallery_id = g.id), g.created_at)
WHERE g.index_version > 0 AND g.index_updated_at IS NULL
"""


class Migration(migrations.Migration):

    dependencies = [
        ('galleries', '0005_gallery_detect_references'),
    ]

    operations = [
        migrations.AddField(
            model_name='gallery',
            name='index_updated_at',
            field=models.DateTimeField(blank=True, help_text='when the searchable content last changed (the last index_version bump); null until the first reference image is embedded or removed', null=True),
        ),
        migrations.RunSQL(BACKFILL, reverse_sql=migrations.RunSQL.noop),
    ]
