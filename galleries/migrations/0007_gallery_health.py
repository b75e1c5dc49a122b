import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('galleries', '0006_gallery_index_updated_at'),
        ('tenancy', '0003_tenant_time_zone'),
    ]

    operations = [
        migrations.CreateModel(
            name='GalleryHealth',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('status', models.CharField(choices=[('queued', 'Queued'), ('running', 'Running'), ('done', 'Done'), ('failed', 'Failed')], default='queued', max_length=16)),
                ('report', models.JSONField(blank=True, default=dict, help_text='findings of the last finished computation')),
                ('model_key', models.CharField(blank=True, help_text='the extractor whose vectors were compared', max_length=120)),
                ('index_version', models.PositiveBigIntegerField(blank=True, help_text='gallery index_version it reflects', null=True)),
                ('failure_reason', models.TextField(blank=True)),
                ('requested_at', models.DateTimeField(blank=True, null=True)),
                ('computed_at', models.DateTimeField(blank=True, null=True)),
                ('gallery', models.OneToOneField(on_delete=django.db.models.deletion.CASCADE, related_name='health', to='galleries.gallery')),
                ('tenant', models.ForeignKey(editable=False, on_delete=django.db.models.deletion.CASCADE, related_name='+', to='tenancy.tenant')),
            ],
            options={
                'abstract': False,
            },
        ),
    ]
