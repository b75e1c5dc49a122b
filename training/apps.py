from django.apps import AppConfig


class TrainingConfig(AppConfig):
    name = "training"

    def ready(self) -> None:
        # the platform's overview page shows this app's figures without importing it (shitu_platform.overview)
        from training.overview import tenant_overview_part
        from shitu_platform.overview import overview_provider_register

        overview_provider_register(name="training", provider=tenant_overview_part)
