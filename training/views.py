"""Dashboard pages for fine-tuning: the tenant's jobs, models and active extractor; a job's progress, loss curve,
before/after evaluation and log.

Pages are open to every member; their forms (start, cancel, promote, roll back) need the admin role, checked here
on the server. A job is looked up through the tenant-scoped mixin before the role is checked, so another tenant's
job is a 404 for everyone. The job page follows a running job through the REST API (training.js).
"""
from __future__ import annotations

from typing import Any

from django import forms
from django.conf import settings
from django.contrib import messages
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import reverse
from django.views import View
from django.views.generic import DetailView, ListView
from django.views.generic.detail import SingleObjectMixin

from galleries.models import Gallery
from modelhub.selectors import active_model, model_versions_visible
from modelhub.services import model_rollback
from shitu_platform.errors import PlatformError
from shitu_platform.tenancy.models import Role
from shitu_platform.tenancy.scoping import TenantDashboardMixin, TenantScopedDashboardMixin
from training import services
from training.models import FineTuneJob

State = FineTuneJob.State
ACT_ROLE = Role.ADMIN  # everyone in the tenant sees the job pages; only admins start, cancel, promote or roll back
JOBS_PER_PAGE = 25
COMPARED_METRICS = (("recall@1", "Recall@1"), ("recall@5", "Recall@5"), ("mAP", "mAP"))


class FineTuneStartForm(forms.Form):
    gallery = forms.ModelChoiceField(queryset=Gallery.objects.none(), empty_label=None)
    epochs = forms.IntegerField(min_value=1, required=False)
    mode = forms.ChoiceField(choices=[("", "Automatic"), *FineTuneJob.Mode.choices], required=False)

    def __init__(self, *args: Any, tenant: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["gallery"].queryset = Gallery.objects.for_tenant(tenant).order_by("name")
        self.fields["epochs"] = forms.IntegerField(min_value=1, max_value=settings.SHITU_FINETUNE_MAX_EPOCHS, required=False)


class FineTuneJobListView(TenantScopedDashboardMixin, ListView):
    write_role = ACT_ROLE
    scoped_model = FineTuneJob
    template_name = "training/job_list.html"
    context_object_name = "jobs"
    paginate_by = JOBS_PER_PAGE

    def safely_get_queryset(self, queryset: QuerySet) -> QuerySet:
        return queryset.select_related("gallery", "created_by", "result_model")

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        kwargs.setdefault("form", FineTuneStartForm(tenant=self.tenant))
        active = active_model(tenant=self.tenant)
        versions = list(model_versions_visible(tenant=self.tenant))
        produced_by = dict(
            FineTuneJob.objects.for_tenant(self.tenant).filter(result_model__in=versions).values_list("result_model_id", "pk")
        )
        for version in versions:
            version.job_id = produced_by.get(version.pk)
        running = FineTuneJob.objects.for_tenant(self.tenant).filter(state__in=FineTuneJob.ACTIVE_STATES).first()
        context = super().get_context_data(**kwargs)
        for job in context["jobs"]:
            job.map_before = job.metrics_before.get("mAP")
            job.map_after = job.metrics_after.get("mAP")
            job.map_trend = _trend(job.map_before, job.map_after)
        context.update(
            active_model=active,
            active_extractor=active.extractor if active else None,
            can_roll_back=bool(active and (active.previous_extractor_id or active.previous_is_default)),
            model_versions=versions,
            running_job=running,
            max_epochs=settings.SHITU_FINETUNE_MAX_EPOCHS,
            **_script_urls(),
        )
        return context

    def post(self, request: HttpRequest) -> HttpResponse:
        form = FineTuneStartForm(request.POST, tenant=self.tenant)
        status = 400
        if form.is_valid():
            try:
                job = services.finetune_start(gallery=form.cleaned_data["gallery"], epochs=form.cleaned_data["epochs"],
                                              mode=form.cleaned_data["mode"] or None, created_by=request.user)
            except PlatformError as error:
                form.add_error(None, str(error))
                status = error.http_status
            else:
                messages.success(request, f"Fine-tuning job #{job.pk} queued on “{job.gallery.name}”.")
                return HttpResponseRedirect(reverse("dashboard:finetune-job", args=[job.pk]))
        self.object_list = self.get_queryset()
        return self.render_to_response(self.get_context_data(form=form), status=status)


class FineTuneJobDetailView(TenantScopedDashboardMixin, DetailView):
    write_role = ACT_ROLE
    scoped_model = FineTuneJob
    template_name = "training/job_detail.html"
    context_object_name = "job"

    def safely_get_queryset(self, queryset: QuerySet) -> QuerySet:
        return queryset.select_related("gallery", "created_by", "base_model", "result_model", "forced_promotion_by")

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        job: FineTuneJob = self.object
        active = active_model(tenant=self.tenant)
        return super().get_context_data(
            is_active=job.state in FineTuneJob.ACTIVE_STATES,
            can_cancel=job.state in FineTuneJob.ACTIVE_STATES and not job.cancel_requested,
            comparison=metric_comparison(job.metrics_before, job.metrics_after),
            held_out_queries=job.metrics_after.get("queries") or job.metrics_before.get("queries"),
            promotion=promotion_check(job, is_staff=self.request.user.is_staff),
            active_extractor=active.extractor if active else None,
            **_script_urls(),
            **kwargs,
        )


class _JobActionView(TenantScopedDashboardMixin, SingleObjectMixin, View):
    write_role = ACT_ROLE
    scoped_model = FineTuneJob
    http_method_names = ["post"]

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        job = self.get_object()  # first: another tenant's job is a 404, whatever the role
        try:
            self.act(job)
        except PlatformError as error:
            messages.error(request, str(error))
        return HttpResponseRedirect(reverse("dashboard:finetune-job", args=[job.pk]))

    def act(self, job: FineTuneJob) -> None:
        raise NotImplementedError


class FineTuneJobCancelView(_JobActionView):
    def act(self, job: FineTuneJob) -> None:
        job = services.finetune_cancel(job=job)
        if job.state == State.CANCELLED:
            messages.success(self.request, f"Job #{job.pk} cancelled.")
        else:
            messages.success(self.request, f"Cancelling job #{job.pk}: it stops after the current step.")


class FineTuneJobPromoteView(_JobActionView):
    def act(self, job: FineTuneJob) -> None:
        force = self.request.POST.get("force") == "1"
        services.finetune_promote(job=job, force=force, by=self.request.user)
        messages.success(self.request, f"Promoting job #{job.pk}: re-embedding the galleries with the new model, "
                                       "then switching over.")


class ModelRollbackView(TenantDashboardMixin, View):
    write_role = ACT_ROLE
    http_method_names = ["post"]

    def post(self, request: HttpRequest) -> HttpResponse:
        try:
            active = model_rollback(tenant=self.tenant)
        except PlatformError as error:
            messages.error(request, str(error))
        else:
            now_using = active.extractor.key if active.extractor else "the platform default model"
            messages.success(request, f"Rolled back: recognition now uses {now_using}.")
        return HttpResponseRedirect(reverse("dashboard:finetune-jobs"))


def metric_comparison(before: dict, after: dict) -> list[dict[str, Any]]:
    """Rows of the before/after table: each compared metric with its delta (None where either side is missing)."""
    rows = []
    for key, label in COMPARED_METRICS:
        old, new = before.get(key), after.get(key)
        delta = new - old if _is_number(old) and _is_number(new) else None
        rows.append({"key": key, "label": label, "before": old, "after": new, "delta": delta, "trend": _trend(old, new)})
    return rows


def promotion_check(job: FineTuneJob, *, is_staff: bool) -> dict[str, Any]:
    """Whether the Promote button works, whether Force is offered (staff only), and why not otherwise."""
    before, after = job.metrics_before.get("mAP"), job.metrics_after.get("mAP")
    better = (after or 0) > (before or 0)  # the service's own rule
    ready = job.state == State.READY and job.result_model_id is not None
    if not ready:
        reason = "Only a job that is ready can be promoted."
    elif better:
        reason = ""
    else:
        reason = (f"The new model is not better on the held-out images (mAP {_fmt(before)} → {_fmt(after)}), "
                  "so promoting it could make recognition worse.")
    return {"ready": ready, "better": better, "allowed": ready and better, "force_offered": ready and not better and is_staff,
            "reason": reason}


def _script_urls() -> dict[str, Any]:
    """What training.js needs: the API and page URL of a job ({id} filled in there) and the state names."""
    return {
        "poll_url": reverse("fine-tune-job-list") + "{id}/",
        "job_url": reverse("dashboard:finetune-job", args=[0]).replace("/0/", "/{id}/"),
        "state_labels": dict(State.choices),
    }


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _trend(old: Any, new: Any) -> str:
    if not (_is_number(old) and _is_number(new)) or new == old:
        return "same"
    return "up" if new > old else "down"


def _fmt(value: Any) -> str:
    return f"{value:.3f}" if _is_number(value) else "—"
