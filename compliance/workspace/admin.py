"""The grant pages ("Staff access to systems"), and the admin index with the links to the
accountability pages."""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.contrib.contenttypes.models import ContentType
from django.utils.translation import gettext_lazy as _
from guardian.models import UserObjectPermission

from compliance.models import System
from compliance.services import ServiceError
from compliance.workspace import services
from compliance.workspace.models import StaffSystemAccess

admin.site.index_template = "workspace/admin/index.html"


def _actor(request) -> str:
    return f"user:{request.user.pk}"


def _levels(user) -> dict[int, str]:
    """system id -> "view" or "act", from the user's own object permissions."""
    rows = UserObjectPermission.objects.filter(
        user=user, content_type=ContentType.objects.get_for_model(System)
    ).values_list("object_pk", "permission__codename")
    levels: dict[int, str] = {}
    for object_pk, codename in rows:
        if codename == "act_on_system_data":
            levels[int(object_pk)] = services.LEVEL_ACT
        elif codename == "view_system_data":
            levels.setdefault(int(object_pk), services.LEVEL_VIEW)
    return levels


class StaffSystemAccessForm(forms.ModelForm):
    may_view = forms.ModelMultipleChoiceField(
        label=_("May see the records of"),
        queryset=System.objects.order_by("name"),
        widget=forms.CheckboxSelectMultiple,
        required=False,
        help_text=_("Requests, log sources, retention policies, legal holds and flagged answers."),
    )
    may_act = forms.ModelMultipleChoiceField(
        label=_("May also act on the records of"),
        queryset=System.objects.order_by("name"),
        widget=forms.CheckboxSelectMultiple,
        required=False,
        help_text=_(
            "Approve, reject and extend requests, change sources, policies and holds, review "
            "flags. A system ticked here is also visible."
        ),
    )

    class Meta:
        model = StaffSystemAccess
        fields: list[str] = []

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.instance.pk:
            levels = _levels(self.instance)
            self.initial["may_view"] = list(levels)
            self.initial["may_act"] = [pk for pk, level in levels.items() if level == "act"]

    def wanted_levels(self) -> dict[int, str]:
        wanted = {system.pk: services.LEVEL_VIEW for system in self.cleaned_data["may_view"]}
        wanted.update({system.pk: services.LEVEL_ACT for system in self.cleaned_data["may_act"]})
        return wanted


class GrantedSystemFilter(admin.SimpleListFilter):
    title = _("granted system")
    parameter_name = "system"

    def lookups(self, request, model_admin):
        return [(str(s.pk), s.name) for s in System.objects.order_by("name")]

    def queryset(self, request, queryset):
        if not self.value():
            return queryset
        granted = UserObjectPermission.objects.filter(
            content_type=ContentType.objects.get_for_model(System), object_pk=self.value()
        ).values("user_id")
        return queryset.filter(pk__in=granted)


@admin.register(StaffSystemAccess)
class StaffSystemAccessAdmin(admin.ModelAdmin):
    """Who of the staff works on which system. Changes go through ``staff_grant_system`` and
    ``staff_revoke_system``, each audited; nobody changes their own access here."""

    form = StaffSystemAccessForm
    list_display = ["username", "full_name", "is_active", "is_superuser", "seen", "acted_on"]
    list_filter = ["is_active", "is_superuser", GrantedSystemFilter]
    search_fields = ["username", "first_name", "last_name"]
    fields = ["username", "full_name", "staff_groups", "is_superuser", "may_view", "may_act"]
    readonly_fields = ["username", "full_name", "staff_groups", "is_superuser"]
    actions = None

    def get_queryset(self, request):
        return super().get_queryset(request).filter(is_staff=True).prefetch_related("groups")

    def get_fields(self, request, obj=None):
        if obj is not None and obj.is_superuser:
            return self.readonly_fields
        return self.fields

    @admin.display(description=_("Name"))
    def full_name(self, obj):
        return obj.get_full_name() or "—"

    @admin.display(description=_("Groups"))
    def staff_groups(self, obj):
        return ", ".join(g.name for g in obj.groups.all()) or "—"

    def _names(self, obj, level: str | None) -> str:
        if obj.is_superuser:
            return str(_("every system (superuser)"))
        levels = _levels(obj)
        ids = [pk for pk, lvl in levels.items() if level is None or lvl == level]
        names = System.objects.filter(pk__in=ids).order_by("name").values_list("name", flat=True)
        return ", ".join(names) or "—"

    @admin.display(description=_("Sees"))
    def seen(self, obj):
        return self._names(obj, None)

    @admin.display(description=_("Acts on"))
    def acted_on(self, obj):
        return self._names(obj, services.LEVEL_ACT)

    def has_add_permission(self, request) -> bool:
        return False  # staff accounts are made under Users; access is granted here

    def has_delete_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        if obj is not None and obj.pk == request.user.pk and not request.user.is_superuser:
            return False  # nobody widens their own access
        return super().has_change_permission(request, obj)

    def save_model(self, request, obj, form, change):
        current = _levels(obj)
        wanted = form.wanted_levels()
        systems = System.objects.in_bulk(set(current) | set(wanted))
        for system_id in sorted(set(current) | set(wanted)):
            before, after = current.get(system_id), wanted.get(system_id)
            if before == after:
                continue
            try:
                if after is None:
                    services.staff_revoke_system(
                        user=obj, system=systems[system_id], actor=_actor(request)
                    )
                else:
                    services.staff_grant_system(
                        user=obj,
                        system=systems[system_id],
                        can_act=after == services.LEVEL_ACT,
                        actor=_actor(request),
                    )
            except ServiceError as exc:
                self.message_user(request, f"{systems[system_id]}: {exc.message}", messages.ERROR)
