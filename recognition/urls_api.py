from rest_framework.routers import SimpleRouter

from recognition import api

router = SimpleRouter()
router.register("recognitions", api.RecognitionViewSet, basename="recognition")
urlpatterns = router.urls
