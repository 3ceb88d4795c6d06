from typing import Any

from django import template

register = template.Library()


@register.simple_tag(takes_context=True)
def can(context: dict[str, Any], perm: str, obj: Any = None) -> bool:
    """`{% can "jobs.run_job" job as may_run %}`: what a role may not do is not shown."""
    return context["request"].user.has_perm(perm, obj)
