from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path
from django.views.generic import RedirectView
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from shitu_platform import health, views

api_v1 = [
    path("", include("shitu_platform.tenancy.urls_api")),
    path("", include("galleries.urls_api")),
    path("", include("recognition.urls_api")),
    path("", include("training.urls_api")),
    path("schema/", SpectacularAPIView.as_view(), name="openapi-schema"),
    path("docs/", SpectacularSwaggerView.as_view(url_name="openapi-schema"), name="openapi-docs"),
]

dashboard = ([path("", include("shitu_platform.tenancy.urls_dashboard")), path("galleries/", include("galleries.urls_dashboard")), path("recognition/", include("recognition.urls_dashboard")), path("training/", include("training.urls_dashboard"))], "dashboard")

urlpatterns = [
    path("", RedirectView.as_view(pattern_name="dashboard:home", permanent=False)),
    path("favicon.ico", views.favicon, name="favicon"),
    path("healthz", health.healthz, name="healthz"),
    path("readyz", health.readyz, name="readyz"),
    path("accounts/login/", auth_views.LoginView.as_view(template_name="auth/login.html"), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("admin/", admin.site.urls),
    path("dashboard/", include(dashboard)),
    path("api/v1/", include(api_v1)),
]

handler400 = "shitu_platform.views.bad_request"
handler403 = "shitu_platform.views.permission_denied"
handler404 = "shitu_platform.views.not_found"
handler500 = "shitu_platform.views.server_error"
