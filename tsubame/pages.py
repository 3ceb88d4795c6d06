"""What every list page of the UI does: the shared filterset, then a page of the result."""

from typing import Any

from django.core import paginator
from django.core.paginator import Page
from django.db.models import QuerySet
from django.http import HttpRequest
from django_filters import FilterSet

PER_PAGE = 50


class Paginator(paginator.Paginator):
    """Django's paginator, except that a page is not cut at the count.

    The count and the page are two queries, each in its own snapshot. Django ends the last
    page at the count, so rows that began to match in between (a run writing output a
    search matches, a new execution) push as many of the oldest rows off the page: the list
    left out an old execution, and agreed with the stale count. A page here holds what the
    page's own query finds, up to `per_page`; only the count (and the page links) can lag.
    """

    def page(self, number: Any) -> Page:
        number = self.validate_number(number)
        bottom = (number - 1) * self.per_page  # (no orphans: nothing here asks for them)
        return self._get_page(self.object_list[bottom : bottom + self.per_page], number, self)


def filtered_page(
    request: HttpRequest, filterset_class: type[FilterSet], queryset: QuerySet[Any]
) -> tuple[FilterSet, Page]:
    filters = filterset_class(request.GET, queryset=queryset, request=request)
    return filters, Paginator(filters.qs, PER_PAGE).get_page(request.GET.get("page"))
