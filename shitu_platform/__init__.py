"""ShiTu Platform: multi-tenant product recognition (PP-ShiTuV2) as a Django service."""
from shitu_platform.celery import app as celery_app

__all__ = ["celery_app"]
