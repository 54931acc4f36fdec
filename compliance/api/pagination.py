from __future__ import annotations

from django.core.exceptions import ValidationError
from rest_framework import pagination
from rest_framework.exceptions import NotFound


class CursorPagination(pagination.CursorPagination):
    """Stable pages for lists that grow while they are read."""

    # The id breaks ties: rows created in the same microsecond (bulk imports) would
    # otherwise come back in no fixed order, and pages would repeat or skip them.
    ordering = ("-created_at", "-pk")
    page_size_query_param = "page_size"
    max_page_size = 500

    def paginate_queryset(self, queryset, request, view=None):
        try:
            return super().paginate_queryset(queryset, request, view)
        except (ValidationError, ValueError, OverflowError):
            # A cursor is opaque but not signed: a forged position ("p=2026") fails the
            # field's validation inside the query. That is the caller's mistake, a 404 like
            # any other unreadable cursor, not a 500.
            raise NotFound(self.invalid_cursor_message) from None

    def get_paginated_response_schema(self, schema):
        # The schema's example links, as a first page answers them.
        described = super().get_paginated_response_schema(schema)
        described["properties"]["next"]["example"] = (
            "https://privacy.example.com/api/v1/subjects/?cursor=cD0yMDI2LTExLTI3"
        )
        described["properties"]["previous"]["example"] = None
        return described


def paginated_response(*, view, request, queryset, serialize):
    """One page of ``queryset`` as the view's paginator answers it; ``serialize`` turns the
    page's rows into the output serializer's data."""
    paginator = view.pagination_class()
    page = paginator.paginate_queryset(queryset, request, view=view)
    return paginator.get_paginated_response(serialize(page))
