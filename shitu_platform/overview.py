"""The tenant's overview page is filled by the apps above the platform: each registers a provider in its
`AppConfig.ready()`, so the platform shows galleries, recognitions and fine-tunes without importing any of them
(the app-layer contract in .importlinter)."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from shitu_platform.tenancy.models import Tenant


@dataclass(frozen=True)
class Figure:
    """One number on the overview, e.g. "Galleries: 3"."""

    label: str
    value: str
    detail: str = ""
    url: str = ""
    order: int = 0
    key: str = ""  # data-testid of the figure, for tests and people reading the markup


@dataclass(frozen=True)
class Panel:
    """A block of the overview drawn by the app that owns its data (a chart, a list of recent jobs)."""

    template: str
    context: dict[str, Any] = field(default_factory=dict)
    order: int = 0
    wide: bool = False  # the page's full width rather than half of it
    lead: bool = False  # above the figures (a call to action)


@dataclass(frozen=True)
class OverviewPart:
    figures: list[Figure] = field(default_factory=list)
    panels: list[Panel] = field(default_factory=list)


@dataclass(frozen=True)
class Overview:
    figures: list[Figure]
    panels: list[Panel]


OverviewProvider = Callable[..., OverviewPart]  # provider(*, tenant) -> OverviewPart

_providers: dict[str, OverviewProvider] = {}


def overview_provider_register(*, name: str, provider: OverviewProvider) -> None:
    """Called from an app's `ready()`; registering the same name again replaces it (autoreload, tests)."""
    _providers[name] = provider


def tenant_overview(*, tenant: Tenant) -> Overview:
    """Every registered app's figures and panels for this tenant, each list in its declared order."""
    parts = [provider(tenant=tenant) for _, provider in sorted(_providers.items())]
    figures = sorted((figure for part in parts for figure in part.figures), key=lambda figure: figure.order)
    panels = sorted((panel for part in parts for panel in part.panels), key=lambda panel: panel.order)
    return Overview(figures=figures, panels=panels)
