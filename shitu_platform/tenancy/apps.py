from django.apps import AppConfig


class TenancyConfig(AppConfig):
    name = "shitu_platform.tenancy"
    label = "tenancy"
    verbose_name = "Tenancy"
