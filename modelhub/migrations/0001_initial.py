"""ModelVersion and ActiveModel move here from training, rows and all: the tables keep their names (db_table), so
the database changes nothing; only Django's state moves (training 0004 drops them from its own). The content types
follow too, so staff permissions and admin history stay attached to the same models."""

import django.db.models.deletion
import django.db.models.manager
from django.db import migrations, models

MOVED = ("modelversion", "activemodel")


def _content_types_move(apps, schema_editor, source: str, target: str) -> None:
    content_type = apps.get_model("contenttypes", "ContentType")
    rows = content_type.objects.using(schema_editor.connection.alias)
    for model in MOVED:
        if not rows.filter(app_label=target, model=model).exists():
            rows.filter(app_label=source, model=model).update(app_label=target)


def content_types_to_modelhub(apps, schema_editor) -> None:
    _content_types_move(apps, schema_editor, "training", "modelhub")


def content_types_to_training(apps, schema_editor) -> None:
    _content_types_move(apps, schema_editor, "modelhub", "training")


class Migration(migrations.Migration):

    initial = True

    dependencies = [
        ("contenttypes", "0002_remove_content_type_name"),
        ("tenancy", "0004_unscoped_default_manager"),
        ("training", "0003_unscoped_default_manager"),  # the tables exist from here on
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.CreateModel(
                    name="ModelVersion",
                    fields=[
                        ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                        ("kind", models.CharField(choices=[("extractor", "Feature extractor"), ("detector", "Mainbody detector")], max_length=16)),
                        ("key", models.CharField(help_text="name@version, stored with every embedding it made", max_length=120, unique=True)),
                        ("storage_prefix", models.CharField(blank=True, help_text="object-store prefix of the model files", max_length=900)),
                        ("manifest", models.JSONField(default=dict)),
                        ("metrics", models.JSONField(blank=True, default=dict)),
                        ("created_at", models.DateTimeField(auto_now_add=True)),
                        ("parent", models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name="children", to="modelhub.modelversion")),
                        ("tenant", models.ForeignKey(blank=True, help_text="empty: a global model every tenant may use", null=True, on_delete=django.db.models.deletion.CASCADE, related_name="+", to="tenancy.tenant")),
                    ],
                    options={
                        "db_table": "training_modelversion",
                        "ordering": ["-created_at"],
                    },
                ),
                migrations.CreateModel(
                    name="ActiveModel",
                    fields=[
                        ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                        ("previous_is_default", models.BooleanField(default=False, help_text="rollback target is the platform default")),
                        ("switched_at", models.DateTimeField(blank=True, null=True)),
                        ("tenant", models.ForeignKey(editable=False, on_delete=django.db.models.deletion.CASCADE, related_name="+", to="tenancy.tenant")),
                        ("extractor", models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.PROTECT, related_name="+", to="modelhub.modelversion")),
                        ("previous_extractor", models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.PROTECT, related_name="+", to="modelhub.modelversion")),
                    ],
                    options={
                        "db_table": "training_activemodel",
                        "constraints": [models.UniqueConstraint(fields=("tenant",), name="active_model_one_per_tenant")],
                    },
                    managers=[
                        ("unscoped", django.db.models.manager.Manager()),
                    ],
                ),
            ],
            database_operations=[
                migrations.RunPython(content_types_to_modelhub, content_types_to_training),
            ],
        ),
    ]
