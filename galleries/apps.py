from django.apps import AppConfig


class GalleriesConfig(AppConfig):
    name = "galleries"

    def ready(self) -> None:
        # the platform's overview page shows this app's figures without importing it (shitu_platform.overview)
        from galleries.overview import tenant_overview_part
        from shitu_platform.overview import overview_provider_register

        overview_provider_register(name="galleries", provider=tenant_overview_part)
