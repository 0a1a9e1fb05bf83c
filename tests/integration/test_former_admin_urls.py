"""The worker profiles' admin pages under the model's former name redirect to the new ones.

Until the model became ``WorkerProfile`` its pages were under ``/admin/djworker/workerconfig/``;
each of those URLs (list, add, change, history, delete, with its query string) answers with a
permanent redirect to the same page under ``workerprofile``, which then works as always.
"""

from __future__ import annotations

import uuid

import pytest
from django.contrib.auth.models import Permission
from django.contrib.contenttypes.models import ContentType
from django.http import QueryDict
from django.test import Client

from djworker.models import Worker, WorkerProfile
from tests.integration.test_dashboard import client_for

pytestmark = pytest.mark.django_db

OLD, NEW = "/admin/djworker/workerconfig/", "/admin/djworker/workerprofile/"


def test_every_former_profile_url_redirects_permanently_to_the_same_page_under_the_new_name() -> (
    None
):
    profile = WorkerProfile.objects.create(name=f"p{uuid.uuid4().hex[:6]}")
    client = client_for(superuser=True)
    for page in (
        "",
        "?q=default&o=1",
        "add/",
        f"{profile.pk}/change/",
        f"{profile.pk}/history/",
        f"{profile.pk}/delete/",
        f"{profile.pk}/",
    ):
        response = client.get(OLD + page)
        assert response.status_code == 301, page
        assert response["Location"] == NEW + page
        followed = client.get(OLD + page, follow=True)
        assert followed.status_code == 200, page
        assert followed.redirect_chain[0] == (NEW + page, 301)


def test_the_change_page_reached_through_a_former_url_edits_the_profile() -> None:
    profile = WorkerProfile.objects.create(name=f"p{uuid.uuid4().hex[:6]}")
    page = client_for(superuser=True).get(f"{OLD}{profile.pk}/change/", follow=True)
    assert page.status_code == 200
    assert f'value="{profile.name}"' in page.content.decode()


def test_a_visitor_who_is_not_signed_in_is_redirected_and_then_asked_to_sign_in() -> None:
    response = Client().get(OLD, follow=True)
    assert response.redirect_chain[0] == (NEW, 301)
    assert response.redirect_chain[-1][0].startswith(f"/admin/login/?next={NEW}")


def test_the_former_name_is_not_listed_in_the_admin_and_has_no_permissions() -> None:
    index = client_for(superuser=True).get("/admin/djworker/").content.decode()
    assert NEW in index
    assert OLD not in index
    assert "former admin URL" not in index
    former = ContentType.objects.get(app_label="djworker", model="workerconfig")
    assert not Permission.objects.filter(content_type=former).exists()
    assert Permission.objects.filter(codename="change_workerprofile").exists()


def test_the_workers_list_filtered_by_the_former_field_name_keeps_its_filter() -> None:
    # The worker's profile field was ``config``: a saved link filtering on it still filters.
    profile = WorkerProfile.objects.create(name=f"p{uuid.uuid4().hex[:6]}")
    Worker.objects.create(hostname=f"w-{profile.name}", profile=profile)
    Worker.objects.create(hostname=f"w-other-{profile.name}")
    client = client_for(superuser=True)
    response = client.get(f"/admin/djworker/worker/?config__id__exact={profile.pk}&o=1")
    assert response.status_code == 301
    path, _, query = response["Location"].partition("?")
    assert path == "/admin/djworker/worker/"
    assert QueryDict(query) == QueryDict(f"o=1&profile__id__exact={profile.pk}")
    page = client.get(response["Location"]).content.decode()
    assert f"w-{profile.name}" in page
    assert f"w-other-{profile.name}" not in page


def test_an_encoded_question_mark_in_a_former_url_stays_in_the_path() -> None:
    client = client_for(superuser=True)
    response = client.get(OLD + "1/change/%3Fx")
    assert response.status_code == 301
    assert response["Location"] == NEW + "1/change/%3Fx"


def test_the_former_field_names_of_a_worker_read_and_set_its_profile() -> None:
    profile = WorkerProfile.objects.create(name=f"p{uuid.uuid4().hex[:6]}")
    worker = Worker(hostname=f"w{uuid.uuid4().hex[:6]}")
    worker.config, worker.config_error = profile, "revision 2 not applied"
    assert (worker.profile, worker.profile_error) == (profile, "revision 2 not applied")
    assert (worker.config, worker.config_error) == (profile, "revision 2 not applied")
