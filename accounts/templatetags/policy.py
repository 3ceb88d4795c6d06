from typing import Any

from django import template

from accounts import policy

register = template.Library()


@register.simple_tag(takes_context=True)
def can(context: dict[str, Any], perm: str, obj: Any = None) -> bool:
    """`{% can "jobs.run_job" job as may_run %}`: what a role may not do is not shown."""
    return context["request"].user.has_perm(perm, obj)


@register.simple_tag(takes_context=True)
def can_somewhere(context: dict[str, Any], perm: str) -> bool:
    """`{% can_somewhere "jobs.view_secretvariable" as shown %}`: a role in some team grants it."""
    return policy.holds_somewhere(context["request"].user, perm)
