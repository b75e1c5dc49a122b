from django.apps import AppConfig


class GalleriesConfig(AppConfig):
    name = "galleries"

    def ready(self) -> None:
        # Imported here, not at the top: Django imports this module before any app's models are loaded.
        from galleries.overview import tenant_overview_part
        from galleries.selectors import model_coverage
        from modelhub.registry import gallery_coverage_register
        from shitu_platform.overview import overview_provider_register

        # the platform's overview page shows this app's figures without importing it (shitu_platform.overview)
        overview_provider_register(name="galleries", provider=tenant_overview_part)
        # which extractor answers for a gallery depends on its embeddings, which modelhub (below) cannot read
        gallery_coverage_register(reader=lambda gallery: model_coverage(gallery=gallery))
