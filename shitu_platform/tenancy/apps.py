from django.apps import AppConfig


class TenancyConfig(AppConfig):
    name = "shitu_platform.tenancy"
    label = "tenancy"
    verbose_name = "Tenancy"

    def ready(self) -> None:
        from django.db.models.signals import post_migrate, pre_migrate
        from django.db.backends.signals import connection_created

        from shitu_platform.tenancy import rls

        connection_created.connect(rls.on_connection_created, dispatch_uid="shitu_rls_connection")
        pre_migrate.connect(rls.on_pre_migrate, dispatch_uid="shitu_rls_pre_migrate")
        post_migrate.connect(rls.on_post_migrate, dispatch_uid="shitu_rls_post_migrate")
