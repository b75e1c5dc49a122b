"""ModelVersion and ActiveModel now belong to modelhub (its 0001 takes over the same tables): in Django's state the
fine-tune job's foreign keys point there and training forgets both models. Nothing changes in the database."""

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ("modelhub", "0001_initial"),
        ("training", "0003_unscoped_default_manager"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AlterField(
                    model_name="finetunejob",
                    name="result_model",
                    field=models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name="+", to="modelhub.modelversion"),
                ),
                migrations.AlterField(
                    model_name="finetunejob",
                    name="base_model",
                    field=models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name="+", to="modelhub.modelversion"),
                ),
                migrations.DeleteModel(name="ActiveModel"),
                migrations.DeleteModel(name="ModelVersion"),
            ],
            database_operations=[],
        ),
    ]
