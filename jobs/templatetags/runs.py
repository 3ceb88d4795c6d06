from django import template

from jobs import parameters
from jobs.models import Job

register = template.Library()


@register.filter
def asks_before_running(job: Job) -> bool:
    """`{% if job|asks_before_running %}`: Run opens the run dialog instead of running at
    once, because the defaults alone would be refused, or because a secret is asked for (a
    secret has no default, and is worth asking for every time)."""
    if parameters.secret_names(job.parameters):
        return True
    try:
        parameters.clean_values(job.parameters, {})
    except parameters.ParameterErrors:
        return True
    return False
