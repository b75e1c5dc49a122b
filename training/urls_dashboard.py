"""Dashboard routes for fine-tuning; included under /dashboard/training/ in the `dashboard` namespace."""
from django.urls import path

from training import views

urlpatterns = [
    path("", views.FineTuneJobListView.as_view(), name="finetune-jobs"),
    path("jobs/<int:pk>/", views.FineTuneJobDetailView.as_view(), name="finetune-job"),
    path("jobs/<int:pk>/cancel/", views.FineTuneJobCancelView.as_view(), name="finetune-job-cancel"),
    path("jobs/<int:pk>/promote/", views.FineTuneJobPromoteView.as_view(), name="finetune-job-promote"),
    path("models/rollback/", views.ModelRollbackView.as_view(), name="finetune-model-rollback"),
]
