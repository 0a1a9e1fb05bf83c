"""A view that enqueues demo tasks, to watch a worker pick them up."""

from __future__ import annotations

from django.http import HttpRequest, JsonResponse

from example_project.demo import tasks


def enqueue(request: HttpRequest) -> JsonResponse:
    count = min(int(request.GET.get("n", "10")), 10_000)
    ids = [tasks.add.delay(i, i).id for i in range(count)]
    return JsonResponse({"enqueued": len(ids), "first": ids[:3]})
