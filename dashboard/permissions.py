"""Who may do what, read in one query per request.

Django's `ModelBackend` reads a user's permissions in two queries (their own, then their groups'),
and every admin page asks for them: the app list, the overview's buttons, each list's actions.
pimsync's roles are groups, so both are needed on every page; this backend reads both at once.
Everything else (who may log in, superusers, inactive users) is `ModelBackend`'s own."""

from __future__ import annotations

from django.contrib.auth.backends import ModelBackend
from django.contrib.auth.models import Permission
from django.db.models import Q


class PermissionsInOneQuery(ModelBackend):
    def get_all_permissions(self, user_obj, obj=None) -> set[str]:
        if not user_obj.is_active or user_obj.is_anonymous or obj is not None:
            return set()
        if not hasattr(user_obj, "_perm_cache"):
            if user_obj.is_superuser:
                perms = Permission.objects.all()
            else:
                perms = Permission.objects.filter(Q(user=user_obj) | Q(group__user=user_obj))
            names = perms.values_list("content_type__app_label", "codename").order_by().distinct()
            user_obj._perm_cache = {f"{app}.{codename}" for app, codename in names}
        return user_obj._perm_cache
