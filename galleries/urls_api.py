from rest_framework.routers import SimpleRouter

from galleries import api

router = SimpleRouter()
router.register("galleries", api.GalleryViewSet, basename="gallery")
router.register("products", api.ProductViewSet, basename="product")
router.register("reference-images", api.ReferenceImageViewSet, basename="reference-image")
router.register("imports", api.ImportJobViewSet, basename="import-job")
urlpatterns = router.urls
