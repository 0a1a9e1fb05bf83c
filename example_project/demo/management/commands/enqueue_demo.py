"""``manage.py enqueue_demo [N]``: publish N demo tasks and show how to follow them."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from example_project.demo import tasks


class Command(BaseCommand):
    help = "Publish demo tasks (additions, a sleep, a CPU-bound one and a retrying one)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("count", nargs="?", type=int, default=10)
        parser.add_argument("--wait", action="store_true", help="wait for the first result")

    def handle(self, *args: Any, count: int, wait: bool, **options: Any) -> None:
        results = [tasks.add.delay(i, i) for i in range(count)]
        tasks.sleep.delay(0.5)
        tasks.crunch.delay()
        tasks.flaky_fetch.apply_async(kwargs={"url": "https://example.invalid/"})
        self.stdout.write(
            f"published {count + 3} tasks; first id {results[0].id if results else '-'}"
        )
        greet = getattr(tasks, "greet", None)
        if greet is not None:
            greeting = greet.enqueue("djworker")
            self.stdout.write(
                f"enqueued a django.tasks task (greet); result id {greeting.id}, "
                "see tasks.greet.get_result(id)"
            )
        else:
            self.stdout.write(
                'django.tasks is not installed: pip install "djworker[tasks]" on Django 5.2'
            )
        if wait and results:
            self.stdout.write(f"first result: {results[0].get(timeout=30)}")
