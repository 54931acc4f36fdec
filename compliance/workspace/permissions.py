"""Which systems (chatbot plugins) a member of the privacy staff works on, and the admin
mixin that holds every list, page, search, autocomplete and action to them.

Two layers decide what a person may do in the admin:

- Django's model permissions (usually through the "Privacy staff" group) say which *kinds*
  of record they handle: requests, log sources, retention policies, flagged answers.
- django-guardian object permissions on ``compliance.System`` say *which systems*:
  ``compliance.view_system_data`` lets them see a system's records, and
  ``compliance.act_on_system_data`` also lets them change them and run actions on them.
  The same permission granted globally (not on one system) covers every system; superusers
  cover every system.

A record may touch several systems (a subject who talked to two plugins, a retention policy
for a data category two systems hold). It is *visible* when one of its systems is granted,
and may be *acted on* only when every system it touches is granted with the act level:
nobody erases or reconfigures another team's data through a record they happen to share
(GDPR Art. 32(4): staff process personal data only as instructed, for their own work).
A record that touches no system at all (a request from someone who matches nobody) is for
staff who cover every system.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from django import forms
from django.contrib import messages
from django.db.models import Model, Q, QuerySet
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext
from guardian.shortcuts import get_objects_for_user

from compliance.models import LogSource, System

VIEW_SYSTEM_DATA = "compliance.view_system_data"
ACT_ON_SYSTEM_DATA = "compliance.act_on_system_data"
SYSTEM_PERMISSIONS = {
    # codename: name, as created by compliance/workspace/migrations/0001_initial.py
    "view_system_data": "Can see the records of this system (requests, sources, policies, flags)",
    "act_on_system_data": "Can act on the records of this system (approve, change, run)",
}

SystemsQ = Callable[[QuerySet[System]], Q]


@dataclass(frozen=True)
class SystemScope:
    """The systems a user covers at one level: every system, or the ones in ``system_ids``."""

    everything: bool
    system_ids: frozenset[int]

    @property
    def empty(self) -> bool:
        return not self.everything and not self.system_ids

    def systems(self) -> QuerySet[System]:
        if self.everything:
            return System.objects.all()
        return System.objects.filter(pk__in=self.system_ids)


NOTHING = SystemScope(everything=False, system_ids=frozenset())
EVERYTHING = SystemScope(everything=True, system_ids=frozenset())


def staff_scope(user, *, act: bool = False) -> SystemScope:
    """The systems ``user`` may see (``act=False``) or act on (``act=True``)."""
    if user is None or not user.is_active or not user.is_staff:
        return NOTHING
    if user.is_superuser:
        return EVERYTHING
    perms = [ACT_ON_SYSTEM_DATA] if act else [VIEW_SYSTEM_DATA, ACT_ON_SYSTEM_DATA]
    # A global grant (on the permission, not on one system) covers every system.
    if any(user.has_perm(perm) for perm in perms):
        return EVERYTHING
    ids = get_objects_for_user(
        user, perms, klass=System, any_perm=True, accept_global_perms=False
    ).values_list("pk", flat=True)
    return SystemScope(everything=False, system_ids=frozenset(ids))


def request_scope(request, *, act: bool = False) -> SystemScope:
    """``staff_scope`` for the signed-in user, computed once per HTTP request."""
    cache = request.__dict__.setdefault("_workspace_scopes", {})
    if act not in cache:
        cache[act] = staff_scope(request.user, act=act)
    return cache[act]


def paths_q(paths: Iterable[str]) -> SystemsQ:
    """A ``SystemsQ`` for lookup paths from a model to ``compliance.System``."""
    paths = tuple(paths)

    def build(systems: QuerySet[System]) -> Q:
        condition = Q(pk__in=[])
        for path in paths:
            condition |= Q(**{f"{path}__in": systems})
        return condition

    return build


def request_systems_q(systems: QuerySet[System]) -> Q:
    """The systems a data subject request touches: those its subject talked to, those whose
    log sources held the subject's records when the request ran (the only link left after
    an erasure removed the subject and the conversations), and the system of the plugin's
    API client that filed it."""
    return (
        Q(subject__conversations__system__in=systems)
        | Q(source_tasks__source__system__in=systems, source_tasks__records_found__gt=0)
        | Q(filed_by__system__in=systems)
    )


def scope_filter(
    queryset: QuerySet, scope: SystemScope, systems_q: SystemsQ, *, exclusive: bool = False
) -> QuerySet:
    """The rows of ``queryset`` that touch a system of ``scope``; with ``exclusive``, only
    those that touch no other system either (the rule for acting on a row). Filters through
    ``pk IN (subquery)`` so multi-valued paths never duplicate rows."""
    if scope.everything:
        return queryset
    if not scope.system_ids:
        return queryset.none()
    model = queryset.model
    manager = model._default_manager
    mine = System.objects.filter(pk__in=scope.system_ids).values("pk")
    queryset = queryset.filter(pk__in=manager.filter(systems_q(mine)).values("pk"))
    if exclusive:
        others = System.objects.exclude(pk__in=scope.system_ids).values("pk")
        queryset = queryset.exclude(pk__in=manager.filter(systems_q(others)).values("pk"))
    return queryset


def instance_system_ids(obj: Model, paths: Iterable[str]) -> set[int]:
    """The systems an object touches as it stands in memory (a form may just have changed
    its system or source), following each path's first foreign key in Python and the rest
    in the database. Paths that start with a reverse or many-to-many relation are read from
    the saved row."""
    found: set[int] = set()
    model = type(obj)
    for path in paths:
        first, _sep, rest = path.partition("__")
        field = model._meta.get_field(first)
        if field.concrete and (field.many_to_one or field.one_to_one):
            value = getattr(obj, field.attname)
            if value is None:
                continue
            if not rest:
                found.add(value)
                continue
            found.update(
                field.related_model._default_manager.filter(pk=value).values_list(rest, flat=True)
            )
        elif obj.pk is not None:
            found.update(model._default_manager.filter(pk=obj.pk).values_list(path, flat=True))
    found.discard(None)
    return found


def _scoped_action(func):
    """Run an admin action only when the user may act on every selected row: a selection
    that reaches into a system they only see (or do not cover) is refused whole, so an
    action never half-happens."""

    @functools.wraps(func)
    def action(modeladmin, request, queryset):
        allowed = modeladmin.act_queryset(request, queryset)
        selected, permitted = queryset.count(), allowed.count()
        if permitted < selected:
            modeladmin.message_user(
                request,
                ngettext(
                    "%(n)d selected row belongs to a system you may not act on; nothing was done.",
                    "%(n)d selected rows belong to systems you may not act on; nothing was done.",
                    selected - permitted,
                )
                % {"n": selected - permitted},
                messages.ERROR,
            )
            return None
        return func(modeladmin, request, allowed)

    return action


class SystemScopedAdminMixin:
    """Holds a ModelAdmin to the systems the user was granted (see the module docstring).

    Set ``system_path`` to the lookup path(s) from the model to ``compliance.System``, e.g.
    ``"system"``, ``"source__system"`` or ``("system", "source__system")``; or override
    ``systems_q`` where a path alone cannot say it (data subject requests).

    - lists, searches and autocompletes show only rows of visible systems;
    - a row of another system is "not found" on its page, its history and its delete page;
    - view-only users get read-only pages, no actions and no add button;
    - actions run only when every selected row may be acted on;
    - forms offer only granted systems and log sources, and refuse a row that would touch
      a system the user may not act on.
    """

    system_path: str | tuple[str, ...] = ()

    # --- scope -------------------------------------------------------------------------

    @property
    def system_paths(self) -> tuple[str, ...]:
        return (self.system_path,) if isinstance(self.system_path, str) else self.system_path

    def systems_q(self, systems: QuerySet[System]) -> Q:
        return paths_q(self.system_paths)(systems)

    def view_scope(self, request) -> SystemScope:
        return request_scope(request, act=False)

    def act_scope(self, request) -> SystemScope:
        return request_scope(request, act=True)

    def act_queryset(self, request, queryset: QuerySet) -> QuerySet:
        return scope_filter(queryset, self.act_scope(request), self.systems_q, exclusive=True)

    def obj_system_ids(self, obj: Model) -> set[int]:
        return instance_system_ids(obj, self.system_paths)

    def _obj_allowed(self, request, obj: Model, *, act: bool) -> bool:
        scope = self.act_scope(request) if act else self.view_scope(request)
        if scope.everything:
            return True
        if scope.empty or obj.pk is None:
            return False
        cache = request.__dict__.setdefault("_workspace_obj_checks", {})
        key = (self.model._meta.label_lower, obj.pk, act)
        if key not in cache:
            rows = self.model._default_manager.filter(pk=obj.pk)
            cache[key] = scope_filter(rows, scope, self.systems_q, exclusive=act).exists()
        return cache[key]

    def may_act_on(self, request, obj: Model | None = None) -> bool:
        if obj is None:
            return not self.act_scope(request).empty
        return self._obj_allowed(request, obj, act=True)

    # --- ModelAdmin hooks --------------------------------------------------------------

    def get_queryset(self, request):
        return scope_filter(super().get_queryset(request), self.view_scope(request), self.systems_q)

    def get_search_results(self, request, queryset, search_term):
        # Autocomplete and custom callers may hand in a queryset of their own: scope it here
        # as well, so no search ever reaches beyond the user's systems.
        queryset = scope_filter(queryset, self.view_scope(request), self.systems_q)
        return super().get_search_results(request, queryset, search_term)

    def has_view_permission(self, request, obj=None):
        if not super().has_view_permission(request, obj):
            return False
        if obj is None:
            return not self.view_scope(request).empty
        return self._obj_allowed(request, obj, act=False)

    def has_change_permission(self, request, obj=None):
        return super().has_change_permission(request, obj) and self.may_act_on(request, obj)

    def has_delete_permission(self, request, obj=None):
        return super().has_delete_permission(request, obj) and self.may_act_on(request, obj)

    def has_add_permission(self, request, *args):
        return super().has_add_permission(request, *args) and self.may_act_on(request)

    def get_actions(self, request):
        actions = super().get_actions(request)
        if not self.may_act_on(request):
            return {}
        return {
            name: (_scoped_action(func), action_name, description)
            for name, (func, action_name, description) in actions.items()
        }

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        scope = self.act_scope(request)
        if not scope.everything:
            if db_field.related_model is System:
                kwargs["queryset"] = scope.systems()
            elif db_field.related_model is LogSource:
                kwargs["queryset"] = LogSource.objects.filter(system__in=scope.systems())
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def formfield_for_manytomany(self, db_field, request, **kwargs):
        scope = self.act_scope(request)
        if not scope.everything and db_field.related_model is System:
            kwargs["queryset"] = scope.systems()
        return super().formfield_for_manytomany(db_field, request, **kwargs)

    def get_form(self, request, obj=None, change=False, **kwargs):
        form_class = super().get_form(request, obj, change=change, **kwargs)
        scope = self.act_scope(request)
        if scope.everything:
            return form_class
        model_admin = self

        class SystemScopedForm(form_class):
            def _post_clean(self):
                super()._post_clean()
                touched = model_admin.obj_system_ids(self.instance)
                if not touched or not touched <= scope.system_ids:
                    self.add_error(
                        None,
                        forms.ValidationError(
                            _(
                                "This would touch a system you may not act on. Choose one "
                                "of your systems, or ask a DPO who covers it."
                            ),
                            code="system_scope",
                        ),
                    )

        SystemScopedForm.__name__ = form_class.__name__
        return SystemScopedForm
