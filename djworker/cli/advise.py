"""``djworker advise``: which pool and how many slots suit each task, from its recorded runs.

The logic and its thresholds are in ``djworker.advisor``; this command reads the window's
result rows, prints the advice (or JSON), and with ``--create-profiles`` writes the two
profiles a worker can follow with ``runworker --profile NAME``.
"""

from __future__ import annotations

import json
import os
from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import CommandParser, OutputWrapper

from djworker import advisor
from djworker.cli import Subcommand, fail, queue_name


def positive_minutes(text: str) -> float:
    import argparse

    try:
        minutes = float(text)
    except ValueError:
        minutes = 0.0
    if not 0 < minutes <= 366 * 24 * 60:
        raise argparse.ArgumentTypeError(
            f"expects a number of minutes above 0 and at most a year; got {text!r}"
        )
    return minutes


def positive_int(text: str) -> int:
    import argparse

    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expects a whole number of 1 or more; got {text!r}")
    return int(text)


def write_advice(advice: advisor.Advice, out: OutputWrapper, *, minutes: float) -> None:
    runs = sum(load.runs for load, _ in advice.tasks)
    out.write(
        f"Pool advice from {runs} task runs finished in the last {minutes:g} minutes "
        "(CPU share = CPU time / wall time; see docs/pools.md):"
    )
    width = max((len(load.task_name) for load, _ in advice.tasks), default=4)
    out.write(f"  {'task':<{width}}  runs  mean wall  mean CPU  CPU share  kind")
    for load, kind in advice.tasks:
        out.write(
            f"  {load.task_name:<{width}}  {load.runs:>4}  {load.mean_wall_s:>7.3f} s  "
            f"{load.mean_cpu_s:>6.3f} s  {load.cpu_share:>9.2f}  {kind}"
        )
    if not advice.groups:
        out.write(
            f"No task has {advisor.MIN_RUNS} or more runs with timings in this window; "
            "nothing to advise yet."
        )
        return
    out.write(f"{len(advice.groups)} worker(s), one per queue:")
    for group in advice.groups:
        out.write(
            f"  queue {group.queue}: {group.pool}, {group.concurrency} slots, for "
            f"{', '.join(group.tasks)}"
        )
        out.write(f"    why: {group.why}")
        out.write(f"    {group.runworker_line()}")
    out.write("Route each task to its queue (task options):")
    for line in advice.routing():
        out.write(f"  {line}")
    names = " and ".join(repr(g.queue) for g in advice.groups)
    out.write(
        f"Or create the profiles {names} (--create-profiles, or the dashboard's button) and "
        "start each worker with:"
    )
    for group in advice.groups:
        out.write(f"  {group.profile_line()}")


class Advise(Subcommand):
    help = (
        "Classify tasks as CPU-bound, I/O-bound or mixed from their recorded CPU and wall time, "
        "and advise a pool and concurrency per group, with the routing onto two queues."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--window-minutes",
            type=positive_minutes,
            default=advisor.DEFAULT_WINDOW_MINUTES,
            help="look at runs finished in this many last minutes (default 60)",
        )
        parser.add_argument(
            "--cpus",
            type=positive_int,
            default=os.cpu_count() or 1,
            help="cores of the machine the CPU-bound worker runs on (default: this one's)",
        )
        parser.add_argument("--cpu-queue", type=queue_name, default=advisor.CPU_QUEUE)
        parser.add_argument("--io-queue", type=queue_name, default=advisor.IO_QUEUE)
        parser.add_argument(
            "--create-profiles",
            action="store_true",
            help="create or update one worker profile per queue, named after it",
        )
        parser.add_argument("--json", action="store_true", help="print one JSON document")

    def run(self, options: dict[str, Any], out: OutputWrapper) -> None:
        minutes = options["window_minutes"]
        advice = advisor.advise_from_results(
            window_minutes=minutes,
            cpu_count=options["cpus"],
            cpu_queue=options["cpu_queue"],
            io_queue=options["io_queue"],
        )
        if options["json"]:
            out.write(json.dumps(advice.as_json(), indent=2))
        else:
            write_advice(advice, out, minutes=minutes)
        if options["create_profiles"]:
            try:
                names = advisor.create_profiles(advice)
            except ValidationError as exc:
                raise fail(f"could not create the profiles: {'; '.join(exc.messages)}") from exc
            if not options["json"]:
                out.write(f"Profiles written: {', '.join(names) or 'none'}.")
