"""The recognitions' part of the tenant overview (registered in RecognitionConfig.ready): recognitions per day in
the tenant's own days, drawn as an inline SVG bar chart, and the share of answers users confirmed."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from django.db.models import Count, Q
from django.db.models.functions import TruncDate
from django.urls import reverse
from django.utils import timezone
from django.utils.dateformat import format as date_format

from recognition.models import MatchReview, Recognition
from shitu_platform.overview import Figure, OverviewPart, Panel
from shitu_platform.tenancy.models import Tenant

CHART_DAYS = 30
# SVG user units; the chart scales to its box. Room on the left for the count axis, below for the dates.
CHART_WIDTH, CHART_HEIGHT, PLOT_LEFT, PLOT_RIGHT, PLOT_TOP, PLOT_BOTTOM = 720, 210, 36, 712, 12, 182
LABEL_EVERY_DAYS = 7


@dataclass(frozen=True)
class DayCount:
    day: date
    total: int
    failed: int


@dataclass(frozen=True)
class Bar:
    day: date
    total: int
    failed: int
    x: float
    width: float
    y: float  # top of the whole bar
    height: float
    failed_height: float  # the failed part, drawn at the top of the bar
    center: float
    label: str  # the date under the bar, on every LABEL_EVERY_DAYS-th day counted back from today


@dataclass(frozen=True)
class DayChart:
    bars: list[Bar]
    ticks: list[tuple[float, int]]  # (y, count) of the horizontal grid lines
    days: int
    total: int
    failed: int
    zone_name: str
    zone_offset: str


def tenant_zone(tenant: Tenant) -> tzinfo:
    try:
        return ZoneInfo(tenant.time_zone)
    except (ZoneInfoNotFoundError, ValueError):  # a name written around the validator: UTC, as the middleware does
        return ZoneInfo("UTC")


def recognitions_per_day(*, tenant: Tenant, days: int = CHART_DAYS, zone: tzinfo) -> list[DayCount]:
    """One entry per calendar day in `zone` (oldest first, today last), days without recognitions included: a
    tenant in Shanghai counts a photo sent at 01:00 its time on that day, not on the UTC day before."""
    today = timezone.now().astimezone(zone).date()
    first = today - timedelta(days=days - 1)
    rows = (
        Recognition.objects.for_tenant(tenant)
        .filter(created_at__gte=datetime.combine(first, time.min, tzinfo=zone))
        .annotate(day=TruncDate("created_at", tzinfo=zone)).values("day")
        .annotate(total=Count("pk"), failed=Count("pk", filter=Q(status=Recognition.Status.FAILED)))
    )
    by_day = {row["day"]: row for row in rows}
    counts = []
    for offset in range(days):
        day = first + timedelta(days=offset)
        row = by_day.get(day, {"total": 0, "failed": 0})
        counts.append(DayCount(day=day, total=row["total"], failed=row["failed"]))
    return counts


def feedback_confirmed(*, tenant: Tenant, since: datetime) -> tuple[int, int]:
    """(answers users marked correct, answers users gave any verdict on) since `since`."""
    counts = MatchReview.objects.for_tenant(tenant).filter(reason=MatchReview.Reason.FLAGGED, created_at__gte=since).aggregate(
        confirmed=Count("pk", filter=Q(verdict=MatchReview.Verdict.CORRECT)), total=Count("pk"),
    )
    return counts["confirmed"], counts["total"]


def day_chart(counts: list[DayCount], *, zone: tzinfo) -> DayChart:
    """Bar geometry in SVG units, so the template only places what was computed here."""
    peak = max((count.total for count in counts), default=0)
    top = _axis_top(peak)
    plot_height = PLOT_BOTTOM - PLOT_TOP
    slot = (PLOT_RIGHT - PLOT_LEFT) / max(len(counts), 1)
    bars = []
    for index, count in enumerate(counts):
        height = plot_height * count.total / top
        days_back = len(counts) - 1 - index
        bars.append(Bar(
            day=count.day, total=count.total, failed=count.failed, x=round(PLOT_LEFT + index * slot + slot * 0.15, 2),
            width=round(slot * 0.7, 2), y=round(PLOT_BOTTOM - height, 2), height=round(height, 2),
            failed_height=round(plot_height * count.failed / top, 2), center=round(PLOT_LEFT + (index + 0.5) * slot, 2),
            label=date_format(count.day, "M j") if days_back % LABEL_EVERY_DAYS == 0 else "",
        ))
    ticks = [(round(PLOT_BOTTOM - plot_height * value / top, 2), value) for value in (0, top // 2, top)]
    now = timezone.now().astimezone(zone)
    return DayChart(bars=bars, ticks=ticks, days=len(counts), total=sum(c.total for c in counts),
                    failed=sum(c.failed for c in counts), zone_name=str(zone), zone_offset=date_format(now, "O"))


def _axis_top(peak: int) -> int:
    """The smallest of 2, 4, 6, 8, 10, 20, 40, ... that holds `peak`: its half is a whole number too."""
    scale = 1
    while True:
        for step in (2, 4, 6, 8, 10):
            if step * scale >= peak:
                return step * scale
        scale *= 10


def tenant_overview_part(*, tenant: Tenant) -> OverviewPart:
    zone = tenant_zone(tenant)
    counts = recognitions_per_day(tenant=tenant, days=CHART_DAYS, zone=zone)
    chart = day_chart(counts, zone=zone)
    since = datetime.combine(counts[0].day, time.min, tzinfo=zone)
    confirmed, with_feedback = feedback_confirmed(tenant=tenant, since=since)
    share = f"{round(100 * confirmed / with_feedback)} %" if with_feedback else "–"
    feedback_detail = (f"{confirmed:,} of {with_feedback:,} answers with feedback" if with_feedback
                       else "no feedback on answers yet")
    figures = [
        Figure(label=f"Recognitions, last {CHART_DAYS} days", value=f"{chart.total:,}",
               detail=f"{chart.failed:,} failed" if chart.failed else f"{counts[-1].total:,} today",
               url=reverse("dashboard:recognitions"), order=20, key="figure-recognitions"),
        Figure(label="Confirmed by feedback", value=share, detail=feedback_detail, order=21, key="figure-confirmed"),
    ]
    return OverviewPart(figures=figures, panels=[Panel(template="overview/_recognitions_chart.html", context={"chart": chart},
                                                       order=10, wide=True)])
