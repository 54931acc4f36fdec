from __future__ import annotations

from rest_framework import pagination


class CursorPagination(pagination.CursorPagination):
    """Stable pages for lists that grow while they are read."""

    ordering = "-created_at"
    page_size_query_param = "page_size"
    max_page_size = 500
