"""Problem answers (RFC 9457): JSON for programs, escaped pages for browsers."""

from __future__ import annotations

import json

import pytest
from aiohttp import web
from aiohttp.test_utils import make_mocked_request

from gateway.http.problems import PROBLEM_BASE, problem_response
from gateway.web.templating import setup_templates


def _problem_app(with_templates: bool) -> web.Application:
    app = web.Application()
    if with_templates:
        setup_templates(app)
    return app


@pytest.mark.parametrize("with_templates", [True, False])
def test_problem_pages_escape_what_they_show(with_templates: bool) -> None:
    request = make_mocked_request(
        "GET", "/x", headers={"Accept": "text/html"}, app=_problem_app(with_templates)
    )
    response = problem_response(
        request,
        status=400,
        slug="bad-thing",
        title="<b>Bad</b>",
        detail='<script>alert("x")</script>',
        headers={"Retry-After": "5", "Cache-Control": "public"},
    )
    assert isinstance(response.text, str)
    assert "<script>" not in response.text
    assert "&lt;script&gt;" in response.text
    assert "<b>Bad</b>" not in response.text
    assert ("Go to the start page" in response.text) is with_templates  # error.html used
    assert response.headers["Cache-Control"] == "no-store"  # never overridable
    assert response.headers["Retry-After"] == "5"
    assert response.content_type == "text/html"


def test_problem_json_carries_extras_and_refuses_to_overwrite_members() -> None:
    request = make_mocked_request("GET", "/x", headers={"Accept": "application/json"})
    response = problem_response(
        request, status=429, slug="slow-down", title="Slow down", detail="Wait.", retry=3
    )
    assert response.content_type == "application/problem+json"
    assert isinstance(response.text, str)
    assert json.loads(response.text) == {
        "type": PROBLEM_BASE + "slow-down",
        "title": "Slow down",
        "status": 429,
        "detail": "Wait.",
        "retry": 3,
    }
    with pytest.raises(ValueError, match="may not replace"):
        problem_response(request, status=400, slug="x", title="t", detail="d", type="/evil")
    with pytest.raises(ValueError, match="slug"):
        problem_response(request, status=400, slug="Not A Slug", title="t", detail="d")
