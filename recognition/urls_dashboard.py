"""Dashboard routes for recognition; included under /dashboard/recognition/ in the `dashboard` namespace."""
from django.urls import path

from recognition.dashboard import pictures, recognitions, review

urlpatterns = [
    path("try/", recognitions.TryItView.as_view(), name="tryit"),
    path("", recognitions.RecognitionListView.as_view(), name="recognitions"),
    path("<uuid:public_id>/", recognitions.RecognitionDetailView.as_view(), name="recognition"),
    path("<uuid:public_id>/image/", pictures.RecognitionImageView.as_view(), name="recognition-image"),
    path("<uuid:public_id>/objects/<int:position>/crop/", pictures.ObjectCropView.as_view(), name="recognition-crop"),
    path("<uuid:public_id>/objects/<int:position>/evidence/", pictures.ObjectEvidenceView.as_view(), name="recognition-evidence"),
    path("reference-images/<int:pk>/thumb/", pictures.ReferenceImageThumbView.as_view(), name="recognition-reference-thumb"),
    path("review/", review.ReviewQueueView.as_view(), name="review-queue"),
    path("review/confirm/", review.ReviewBulkConfirmView.as_view(), name="review-bulk-confirm"),
    path("review/<int:pk>/confirm/", review.ReviewConfirmView.as_view(), name="review-confirm"),
    path("review/<int:pk>/relabel/", review.ReviewRelabelView.as_view(), name="review-relabel"),
    path("review/<int:pk>/unknown/", review.ReviewUnknownView.as_view(), name="review-unknown"),
]
