"""What every list page of the UI does: the shared filterset, then a page of the result."""

from typing import Any

from django.core.paginator import Page, Paginator
from django.db.models import QuerySet
from django.http import HttpRequest
from django_filters import FilterSet

PER_PAGE = 50


def filtered_page(
    request: HttpRequest, filterset_class: type[FilterSet], queryset: QuerySet[Any]
) -> tuple[FilterSet, Page]:
    filters = filterset_class(request.GET, queryset=queryset, request=request)
    return filters, Paginator(filters.qs, PER_PAGE).get_page(request.GET.get("page"))
