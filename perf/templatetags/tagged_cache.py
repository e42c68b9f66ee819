"""`{% tagged_cache %}`: Django's `{% cache %}` fragment tag, with tags and single flight.

    {% load tagged_cache %}
    {% tagged_cache 300 "users-rows" request.get_full_path can_change tags="users" %}
      ... expensive rows ...
    {% endtagged_cache %}

The fragment is rendered once among concurrent requests (get_or_set) and dropped when any
of its tags is invalidated, like every other tagged value. `tags` is a comma-separated
string or a list.

It lives here, not in perf/cache/, because Django looks for tag libraries in an app's
`templatetags` package; the cache it renders through is perf.cache's.
"""

from __future__ import annotations

import hashlib
from typing import Any

from django import template
from django.template.base import FilterExpression, Node, NodeList, Parser, Token
from django.utils.safestring import SafeString, mark_safe

from perf.cache import tagged_cache

register = template.Library()


class TaggedCacheNode(Node):
    def __init__(
        self,
        nodelist: NodeList,
        timeout: FilterExpression,
        name: FilterExpression,
        vary_on: list[FilterExpression],
        tags: FilterExpression | None,
    ) -> None:
        self.nodelist = nodelist
        self.timeout = timeout
        self.name = name
        self.vary_on = vary_on
        self.tags = tags

    def render(self, context: Any) -> SafeString:
        timeout = self.timeout.resolve(context)
        try:
            timeout = None if timeout is None else float(timeout)
        except (TypeError, ValueError):
            raise template.TemplateSyntaxError(f"tagged_cache timeout must be a number, got {timeout!r}") from None
        vary = ":".join(str(expression.resolve(context)) for expression in self.vary_on)
        digest = hashlib.md5(vary.encode(), usedforsecurity=False).hexdigest()
        key = f"fragment:{self.name.resolve(context)}:{digest}"
        tags = self.tags.resolve(context) if self.tags is not None else ()
        if isinstance(tags, str):
            tags = [tag.strip() for tag in tags.split(",") if tag.strip()]

        def render_fragment() -> str:
            return str(self.nodelist.render(context))

        html = tagged_cache().get_or_set(key, render_fragment, timeout, tags=list(tags))
        return mark_safe(html)  # noqa: S308 - rendered by this template's own nodes  # nosec B308 B703


@register.tag("tagged_cache")
def do_tagged_cache(parser: Parser, token: Token) -> TaggedCacheNode:
    bits = token.split_contents()
    if len(bits) < 3:
        raise template.TemplateSyntaxError('usage: {% tagged_cache <timeout> <name> [vary_on ...] [tags="a,b"] %}')
    nodelist = parser.parse(("endtagged_cache",))
    parser.delete_first_token()
    tags = None
    vary_on = []
    for bit in bits[3:]:
        if bit.startswith("tags="):
            tags = parser.compile_filter(bit[len("tags=") :])
        else:
            vary_on.append(parser.compile_filter(bit))
    return TaggedCacheNode(nodelist, parser.compile_filter(bits[1]), parser.compile_filter(bits[2]), vary_on, tags)
