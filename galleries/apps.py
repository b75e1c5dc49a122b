from django.apps import AppConfig


class GalleriesConfig(AppConfig):
    name = "galleries"

    def ready(self) -> None:
        # the platform's overview page shows this app's figures without importing it (shitu_platform.overview)
        from galleries.overview import tenant_overview_part
        from shitu_platform.overview import overview_provider_register

        overview_provider_register(name="galleries", provider=tenant_overview_part)
        # which extractor answers for a gallery depends on its embeddings, which modelhub (below) cannot read
        from galleries.selectors import model_coverage
        from modelhub.registry import gallery_coverage_register

        gallery_coverage_register(reader=lambda gallery: model_coverage(gallery=gallery))
