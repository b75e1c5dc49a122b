"""Dashboard routes for recognition; included under /dashboard/recognition/ in the `dashboard` namespace."""
from django.urls import path

from recognition import views

urlpatterns = [
    path("try/", views.TryItView.as_view(), name="tryit"),
    path("", views.RecognitionListView.as_view(), name="recognitions"),
    path("<uuid:public_id>/", views.RecognitionDetailView.as_view(), name="recognition"),
    path("<uuid:public_id>/image/", views.RecognitionImageView.as_view(), name="recognition-image"),
    path("<uuid:public_id>/objects/<int:position>/crop/", views.ObjectCropView.as_view(), name="recognition-crop"),
    path("<uuid:public_id>/objects/<int:position>/evidence/", views.ObjectEvidenceView.as_view(), name="recognition-evidence"),
    path("reference-images/<int:pk>/thumb/", views.ReferenceImageThumbView.as_view(), name="recognition-reference-thumb"),
    path("review/", views.ReviewQueueView.as_view(), name="review-queue"),
    path("review/confirm/", views.ReviewBulkConfirmView.as_view(), name="review-bulk-confirm"),
    path("review/<int:pk>/confirm/", views.ReviewConfirmView.as_view(), name="review-confirm"),
    path("review/<int:pk>/relabel/", views.ReviewRelabelView.as_view(), name="review-relabel"),
    path("review/<int:pk>/unknown/", views.ReviewUnknownView.as_view(), name="review-unknown"),
]
