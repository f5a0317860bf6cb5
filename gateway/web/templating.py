"""Wire the gateway's Jinja2 templates into an aiohttp application, escaping on."""

from __future__ import annotations

import aiohttp_jinja2
import jinja2
from aiohttp import web


def setup_templates(app: web.Application) -> None:
    """Load templates from ``gateway/web/templates`` with HTML autoescaping for every file."""
    aiohttp_jinja2.setup(
        app,
        loader=jinja2.PackageLoader("gateway.web", "templates"),
        # Every template here is HTML; autoescape by default so no page can forget.
        autoescape=jinja2.select_autoescape(default=True),
    )
