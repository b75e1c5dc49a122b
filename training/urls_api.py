from django.urls import path
from rest_framework.routers import SimpleRouter

from training import api

router = SimpleRouter()
router.register("fine-tune-jobs", api.FineTuneJobViewSet, basename="fine-tune-job")
router.register("models", api.ModelVersionViewSet, basename="model-version")
urlpatterns = [
    path("models/active/", api.ActiveModelView.as_view(), name="active-model"),
    path("models/rollback/", api.RollbackView.as_view(), name="model-rollback"),
    *router.urls,
]
