from rest_framework import pagination

from tsubame.pages import Paginator


class Pagination(pagination.PageNumberPagination):
    # Never cuts a page at a count taken before it (see tsubame.pages.Paginator).
    django_paginator_class = Paginator
    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 500
