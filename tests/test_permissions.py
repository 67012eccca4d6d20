"""The authentication backend reads a user's own and their groups' permissions in one query and
grants exactly what Django's own backend grants."""

from __future__ import annotations

import pytest
from django.contrib.auth.backends import ModelBackend
from django.contrib.auth.models import Group, Permission, User
from django.db import connection
from django.test.utils import CaptureQueriesContext

from dashboard.permissions import PermissionsInOneQuery

pytestmark = pytest.mark.django_db


def fresh(user: User) -> User:
    """The user as a new request loads it: no permissions read yet."""
    return User.objects.get(pk=user.pk)


def test_it_grants_what_djangos_backend_grants_for_every_kind_of_user(people):
    direct = people["Viewers"]
    direct.user_permissions.add(Permission.objects.get(codename="retry_event"))  # their own and a role's
    two_roles = people["Support"]
    two_roles.groups.add(Group.objects.get(name="Mapping editors"))
    inactive = User.objects.create_user("gone", is_staff=True, is_active=False)
    inactive.groups.add(Group.objects.get(name="Support"))
    nobody = User.objects.create_user("nobody", is_staff=True)
    admin = User.objects.create_superuser("root", password="pw-for-tests-1")
    for user in (direct, two_roles, people["Mapping editors"], inactive, nobody, admin):
        ours = PermissionsInOneQuery().get_all_permissions(fresh(user))
        assert ours == ModelBackend().get_all_permissions(fresh(user)), user.username
    assert "pimsync.retry_event" in PermissionsInOneQuery().get_all_permissions(fresh(direct))
    assert PermissionsInOneQuery().get_all_permissions(fresh(inactive)) == set()
    assert not fresh(nobody).has_perm("pimsync.view_event") and fresh(direct).has_perm("pimsync.retry_event")


def test_a_page_view_reads_a_role_users_permissions_once(client, people):
    client.force_login(people["Support"])
    with CaptureQueriesContext(connection) as queries:
        assert client.get("/admin/pimsync/event/").status_code == 200
    assert sum('"auth_permission"' in query["sql"] for query in queries.captured_queries) == 1
