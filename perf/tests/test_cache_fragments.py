"""{% tagged_cache %}: a rendered fragment is served from the cache until its tag is invalidated."""

from __future__ import annotations

from collections.abc import Iterator
from typing import cast

import pytest
from django.core.cache import cache as default_cache
from django.template import Context, Template, TemplateSyntaxError

from perf.cache import RedisTaggedCache

pytestmark = pytest.mark.django_db

TEMPLATE = Template(
    '{% load tagged_cache %}{% tagged_cache 60 "rows" page tags="users,stats" %}{{ counter.next }}{% endtagged_cache %}'
)

# The default cache is always the tagged backend: typed as such for the checker.
cache = cast("RedisTaggedCache", default_cache)


class Counter:
    def __init__(self) -> None:
        self.calls = 0

    def next(self) -> int:
        self.calls += 1
        return self.calls


@pytest.fixture(autouse=True)
def _clean() -> Iterator[None]:
    cache.clear()
    yield
    cache.clear()


def test_a_fragment_renders_once_and_again_after_its_tag_is_invalidated() -> None:
    counter = Counter()
    assert TEMPLATE.render(Context({"page": 1, "counter": counter})) == "1"
    assert TEMPLATE.render(Context({"page": 1, "counter": counter})) == "1"
    assert TEMPLATE.render(Context({"page": 2, "counter": counter})) == "2"
    cache.invalidate_tags(["stats"])
    assert TEMPLATE.render(Context({"page": 1, "counter": counter})) == "3"


def test_a_bad_timeout_is_a_clear_template_error() -> None:
    bad = Template('{% load tagged_cache %}{% tagged_cache "soon" "rows" %}x{% endtagged_cache %}')
    with pytest.raises(TemplateSyntaxError, match="timeout must be a number"):
        bad.render(Context({}))
    with pytest.raises(TemplateSyntaxError, match="usage"):
        Template("{% load tagged_cache %}{% tagged_cache 60 %}x{% endtagged_cache %}")
