"""Dashboard routes for galleries; included under /dashboard/galleries/ in the `dashboard` namespace."""
from django.urls import path

from galleries import health_views, views

urlpatterns = [
    path("", views.GalleryListView.as_view(), name="galleries"),
    path("<int:pk>/", views.GalleryDetailView.as_view(), name="gallery"),
    path("<int:pk>/settings/", views.GallerySettingsView.as_view(), name="gallery-settings"),
    path("<int:pk>/edit/", views.GalleryEditView.as_view(), name="gallery-edit"),
    path("<int:pk>/delete/", views.GalleryDeleteView.as_view(), name="gallery-delete"),
    path("<int:pk>/health/", health_views.GalleryHealthView.as_view(), name="gallery-health"),
    path("<int:pk>/health/recompute/", health_views.GalleryHealthRecomputeView.as_view(), name="gallery-health-recompute"),
    path("<int:pk>/health.csv", health_views.GalleryHealthCsvView.as_view(), name="gallery-health-csv"),
    path("products/<int:pk>/", views.ProductDetailView.as_view(), name="gallery-product"),
    path("products/<int:pk>/edit/", views.ProductEditView.as_view(), name="gallery-product-edit"),
    path("products/<int:pk>/delete/", views.ProductDeleteView.as_view(), name="gallery-product-delete"),
    path("products/<int:pk>/merge/", health_views.ProductMergeView.as_view(), name="gallery-product-merge"),
    path("images/<int:pk>/thumb/", views.ReferenceImageThumbnailView.as_view(), name="gallery-image-thumb"),
    path("images/<int:pk>/preview/", views.ReferenceImagePreviewView.as_view(), name="gallery-image-preview"),
    path("images/<int:pk>/box/", views.ReferenceImageBoxView.as_view(), name="gallery-image-box"),
    path("images/<int:pk>/delete/", views.ReferenceImageDeleteView.as_view(), name="gallery-image-delete"),
    path("images/<int:pk>/move/", views.ReferenceImageMoveView.as_view(), name="gallery-image-move"),
]
