"""``field__any=values``: membership in a long list of values, as one array parameter.

``field__in`` writes one placeholder per value: with the thousand customers of an ingest
batch, building and parsing that list costs more than the look-up itself. On PostgreSQL
``__any`` sends the values as one array (``field = ANY(%s)``), which also keeps the SQL text
the same whatever the number of values; elsewhere it is an ordinary ``IN``.
"""

from __future__ import annotations

from django.core.exceptions import EmptyResultSet
from django.db.models import Field, ForeignObject, Lookup


class AnyOf(Lookup):
    lookup_name = "any"
    prepare_rhs = False

    def as_sql(self, compiler, connection):
        lhs, lhs_params = self.process_lhs(compiler, connection)
        field = self.lhs.output_field
        values = [field.get_db_prep_value(value, connection, prepared=False) for value in self.rhs]
        if connection.vendor == "postgresql":
            return f"{lhs} = ANY(%s)", [*lhs_params, values]
        if not values:
            raise EmptyResultSet
        return f"{lhs} IN ({', '.join(['%s'] * len(values))})", [*lhs_params, *values]


Field.register_lookup(AnyOf)
# Relations keep lookups of their own (Django's RelatedIn and so on): register there too.
ForeignObject.register_lookup(AnyOf)
