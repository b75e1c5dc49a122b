from django.apps import AppConfig


class ShituPlatformConfig(AppConfig):
    name = "shitu_platform"
    verbose_name = "ShiTu Platform"
