"""`{{ value|zoned }}`: a datetime in the active zone (the tenant's, on dashboard pages), labelled with that zone."""
from __future__ import annotations

from datetime import datetime

from django import template
from django.utils import timezone
from django.utils.dateformat import format as date_format
from django.utils.dateparse import parse_datetime
from django.utils.html import format_html
from django.utils.safestring import SafeString

register = template.Library()

FORMATS = {"minutes": "Y-m-d H:i T", "seconds": "Y-m-d H:i:s T"}


@register.filter
def zoned(value: datetime | None, precision: str = "minutes") -> SafeString | str:
    """A `<time>` element: "2025-03-01 08:00 CST", its ISO form (with the offset) and the zone's full name on hover,
    since abbreviations such as CST are ambiguous. Empty for no value, so `|default:"never"` still works. An ISO
    string (a time kept in a JSON field) is read first."""
    if isinstance(value, str):
        value = parse_datetime(value)
    if not isinstance(value, datetime):
        return ""
    local = timezone.localtime(value) if timezone.is_aware(value) else value
    shown = date_format(local, FORMATS.get(precision, FORMATS["minutes"]))
    zone = f"{timezone.get_current_timezone_name()} (UTC{date_format(local, 'O')})"
    return format_html('<time datetime="{}" title="{}">{}</time>', local.isoformat(), zone, shown)
