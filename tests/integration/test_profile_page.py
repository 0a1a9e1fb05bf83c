"""The worker profile page guides: pool choices with the work each suits, inherited values,
sizes and queue names checked as the command line checks them, and each worker's outcome."""

from __future__ import annotations

import html
import uuid

import pytest
from django.test import override_settings

from djworker.models import Worker, WorkerProfile
from tests.integration.test_control import change_form_data
from tests.integration.test_dashboard import client_for

pytestmark = pytest.mark.django_db


def profile_page(profile: WorkerProfile) -> str:
    return f"/admin/djworker/workerprofile/{profile.pk}/change/"


def new_profile(**fields: object) -> WorkerProfile:
    return WorkerProfile.objects.create(name=f"p{uuid.uuid4().hex[:6]}", **fields)


def test_the_pool_is_a_choice_saying_what_work_each_pool_suits() -> None:
    page = html.unescape(
        client_for(superuser=True).get(profile_page(new_profile())).content.decode()
    )
    assert 'type="radio" name="pool" value="prefork"' in page
    for guidance in (
        "prefork: CPU-bound work",
        "gevent: many waits on the network",
        "threads: a few blocking calls",
        "solo: one task at a time in the main thread; debugging",
        "inherit (threads from the code default)",
    ):
        assert guidance in page
    assert "docs/pools.md" in page
    assert 'name="custom_pool"' in page


@override_settings(DJWORKER={"PREFETCH_MULTIPLIER": 8})
def test_a_blank_field_says_what_it_inherits_and_from_which_layer() -> None:
    page = html.unescape(
        client_for(superuser=True).get(profile_page(new_profile())).content.decode()
    )
    assert "Blank inherits 8 from settings.DJWORKER['PREFETCH_MULTIPLIER']." in page
    assert "Blank inherits 30.0 from the code default." in page
    assert "Blank inherits the worker's CPU count from the code default." in page
    assert 'placeholder="inherits 8"' in page


def test_memory_takes_a_size_as_the_command_line_does_and_queue_names_follow_its_rule() -> None:
    profile = new_profile()
    client = client_for(superuser=True)
    saved = client.post(
        profile_page(profile), change_form_data(profile, max_memory_per_child="200MB")
    )
    assert saved.status_code == 302
    profile.refresh_from_db()
    assert profile.max_memory_per_child == 200 * 1024

    refused = html.unescape(
        client.post(
            profile_page(profile), change_form_data(profile, max_memory_per_child="lots")
        ).content.decode()
    )
    assert (
        "Max memory per child expects a size: an integer in KiB, or a number with KB/MB/GB; "
        "got 'lots'." in refused
    )
    refused = html.unescape(
        client.post(
            profile_page(profile), change_form_data(profile, queues="mail,bad queue")
        ).content.decode()
    )
    assert "queue names are letters, digits, '_', '.', ':' or '-'; got 'bad queue'" in refused


def test_custom_needs_a_class_name() -> None:
    profile = new_profile()
    refused = client_for(superuser=True).post(
        profile_page(profile), {**change_form_data(profile), "pool": "custom", "custom_pool": ""}
    )
    assert "Give the custom pool class (module.path:Class)" in html.unescape(
        refused.content.decode()
    )


def test_after_a_save_each_running_worker_says_what_it_applied_and_what_it_keeps() -> None:
    profile = new_profile(concurrency=2)
    Worker.objects.create(
        hostname="w1",
        profile=profile,
        applied_revision=1,
        pinned={"concurrency": "cli", "queues": "env"},
        settings=[
            ["concurrency", 2, "cli"],
            ["queues", ["q1"], "env"],
            ["prefetch_multiplier", 4, "default"],
        ],
    )
    Worker.objects.create(hostname="w-stopped", profile=profile, state="stopped")
    client = client_for(superuser=True)
    page = html.unescape(
        client.post(
            profile_page(profile),
            change_form_data(profile, concurrency=5, queues="q2", prefetch_multiplier=2),
            follow=True,
        ).content.decode()
    )
    assert (
        "Worker w1 applying revision 2 (has 1); keeps concurrency 2 pinned by --concurrency; "
        "keeps queues q1 pinned by DJWORKER_QUEUES." in page
    )
    assert "w-stopped" not in page

    Worker.objects.filter(hostname="w1").update(
        applied_revision=2,
        settings=[
            ["concurrency", 2, "cli"],
            ["queues", ["q1"], "env"],
            ["prefetch_multiplier", 2, "admin"],
        ],
    )
    live = client.get(f"/admin/djworker/workerprofile/{profile.pk}/followers/").json()
    (row,) = live["workers"]
    assert (row["status"], row["applied"]) == ("applied revision 2", "prefetch_multiplier 2")
    assert "keeps concurrency 2 pinned by --concurrency" in live["html"]["followers"]
    assert (
        client_for().get(f"/admin/djworker/workerprofile/{profile.pk}/followers/").status_code
        == 403
    )
