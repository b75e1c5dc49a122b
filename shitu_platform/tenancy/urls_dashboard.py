from django.urls import path

from shitu_platform.tenancy import views

urlpatterns = [
    path("", views.HomeView.as_view(), name="home"),
    path("switch-tenant/", views.SwitchTenantView.as_view(), name="switch-tenant"),
    path("api-keys/", views.ApiKeyListView.as_view(), name="api-keys"),
    path("api-keys/<int:pk>/", views.ApiKeyDetailView.as_view(), name="api-key-detail"),
    path("api-keys/<int:pk>/revoke/", views.ApiKeyRevokeView.as_view(), name="api-key-revoke"),
]
