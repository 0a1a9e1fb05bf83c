"""The worker profile form: a guided choice of pool, inherited values, and what workers did.

* The pool is a choice, each saying what work it suits (docs/pools.md has the measured
  reasons), plus a field for a custom class listed in ``CUSTOM_POOLS``.
* A blank field says which value it inherits, and from which layer (``settings.DJWORKER`` or
  the code default); a worker's environment and command line still win over the profile.
* The memory limit accepts ``200MB`` as ``--max-memory-per-child`` does (the same parser).
* After a save, and live on the profile's page, each running worker says what it applied from
  the profile and what it keeps from its command line or environment.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.utils.html import format_html

from djworker import conf, option_values
from djworker.concurrency.registry import POOLS, PROFILE_POOLS, canonical
from djworker.exceptions import ConfigurationError
from djworker.models import Worker, WorkerProfile, WorkerState

CUSTOM = "custom"
POOLS_DOC = "docs/pools.md"
LAYER_NAMES = {conf.DEFAULT: "the code default", conf.SETTINGS: "settings.DJWORKER"}


def inherited() -> dict[str, str]:
    """Profile field -> "VALUE from LAYER": what a blank field gives a worker with no
    environment or command-line value for it."""
    try:
        base = conf.load_config(environ={}, profile_name="(inherited)")
    except ConfigurationError:
        return {}
    shown: dict[str, str] = {}
    for field, option in conf.OPTION_OF_PROFILE_FIELD.items():
        setting = option.field
        value = getattr(base, setting)
        if setting == "autoscale":
            value = value[0 if field == "autoscale_min" else 1] if value else None
        elif isinstance(value, tuple):
            value = ",".join(value)
        if value is None:
            value = {"concurrency": "the worker's CPU count"}.get(field, "no value")
        layer = base.sources.get(setting, conf.DEFAULT)
        source = LAYER_NAMES.get(layer, layer)
        if layer == conf.SETTINGS:
            source = f"settings.DJWORKER[{option.settings_key!r}]"
        shown[field] = f"{value} from {source}"
    return shown


def pool_choices(current: str) -> list[tuple[str, str]]:
    """Every registered pool under its own name, saying the work it suits (its registry
    entry's guide, in the entries' ``guide_rank`` order); an alias only when the profile holds
    it, so a save keeps it."""
    own_names = sorted(
        (name for name in POOLS if canonical(name) == name), key=lambda n: POOLS[n].guide_rank
    )
    choices = [(name, POOLS[name].guide or name) for name in own_names]
    if current in POOLS and canonical(current) != current:
        choices.append((current, f"{current}: the same as {canonical(current)}"))
    choices.append((CUSTOM, "a custom pool class listed in settings.DJWORKER['CUSTOM_POOLS']"))
    return choices


class ProfileForm(forms.ModelForm):
    """The admin's worker profile form (``WorkerProfileAdmin.form``)."""

    custom_pool = forms.CharField(
        required=False,
        max_length=200,
        label="Custom pool class",
        help_text="module.path:Class, listed in settings.DJWORKER['CUSTOM_POOLS']; used when "
        "the pool above is 'custom'.",
    )
    max_memory_per_child = forms.CharField(
        required=False,
        label="Max memory per child",
        help_text="prefork only: KiB, or a size such as 200MB or 1.5G, as "
        "--max-memory-per-child takes it.",
    )

    class Meta:
        model = WorkerProfile
        fields = "__all__"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        current = self.instance.pool.strip() if self.instance.pk else ""
        defaults = inherited()
        if "pool" in self.fields:
            self.fields["pool"] = forms.ChoiceField(
                required=False,
                choices=[
                    ("", f"inherit ({defaults.get('pool', 'unknown')})"),
                    *pool_choices(current),
                ],
                widget=forms.RadioSelect,
                label="Pool",
                help_text=format_html(
                    "Which pool suits which work, with measured figures: <code>{}</code>. "
                    "Changing it restarts the pool gracefully (running tasks finish).",
                    POOLS_DOC,
                ),
            )
            custom = bool(current) and current not in PROFILE_POOLS
            self.initial["pool"] = CUSTOM if custom else current
            self.initial["custom_pool"] = current if custom else ""
        if self.instance.pk and self.instance.max_memory_per_child:
            self.initial["max_memory_per_child"] = str(self.instance.max_memory_per_child)
        for field, value in defaults.items():
            if field in self.fields and field != "pool":
                widget = self.fields[field].widget
                widget.attrs.setdefault("placeholder", f"inherits {value.split(' from ')[0]}")
                help_text = str(self.fields[field].help_text or "").strip()
                if help_text and not help_text.endswith("."):
                    help_text += "."
                self.fields[field].help_text = f"{help_text} Blank inherits {value}.".strip()

    def clean_pool(self) -> str:
        choice = str(self.cleaned_data.get("pool") or "")
        if choice != CUSTOM:
            return choice
        custom = str(self.data.get(self.add_prefix("custom_pool"), "")).strip()
        if not custom:
            raise forms.ValidationError(
                "Give the custom pool class (module.path:Class) in the field below, or choose "
                f"one of {', '.join(PROFILE_POOLS)}."
            )
        return custom

    def clean_max_memory_per_child(self) -> int | None:
        try:
            return option_values.parse_size_kib(
                self.cleaned_data.get("max_memory_per_child"), name="max memory per child"
            )
        except ConfigurationError as exc:
            raise forms.ValidationError(str(exc)[0].upper() + str(exc)[1:] + ".") from None


def worker_outcomes(profile: WorkerProfile) -> list[dict[str, Any]]:
    """Per running worker following ``profile``: what it applied and what it kept.

    "Kept" are the settings the profile sets that the worker's command line or environment
    pins ("keeps concurrency 2 pinned by --concurrency").
    """
    # The stored row: the form's instance holds the posted values, valid or not.
    stored = WorkerProfile.objects.filter(pk=profile.pk).first() if profile.pk else None
    if stored is None:
        return []
    profile = stored
    try:
        values = profile.as_settings()
    except ConfigurationError:  # a row written without validation; the workers say why
        values = {}
    rows = []
    workers = Worker.objects.filter(profile=profile).exclude(
        state__in=(WorkerState.STOPPED, WorkerState.LOST)
    )
    for worker in workers.order_by("hostname"):
        current = {field: value for field, value, _layer in worker.settings or ()}
        kept, applied = [], []
        for setting, value in values.items():
            if value is None:
                continue
            name = setting.removesuffix("_s").removesuffix("_kib")
            shown = _shown(current.get(setting, value))
            layer = worker.pinned.get(setting)
            if layer in (conf.CLI, conf.ENV):
                option = conf.OPTIONS_BY_FIELD.get(setting)
                by = (option.cli_flag if layer == conf.CLI else option.env_var) if option else layer
                kept.append(f"keeps {name} {shown} pinned by {by}")
            else:
                applied.append(f"{name} {shown}")
        up_to_date = worker.applied_revision == profile.revision
        if up_to_date:
            status = f"applied revision {profile.revision}"
        elif worker.profile_error:
            status = f"did not apply revision {profile.revision}: {worker.profile_error}"
        else:
            status = f"applying revision {profile.revision} (has {worker.applied_revision})"
        rows.append(
            {
                "hostname": worker.hostname,
                "state": worker.current_state,
                "status": status,
                "up_to_date": up_to_date,
                "applied": ", ".join(applied) if up_to_date else "",
                "kept": "; ".join(kept),
            }
        )
    return rows


def _shown(value: Any) -> str:
    if isinstance(value, list | tuple):
        return ",".join(map(str, value))
    return str(value)


def outcome_sentence(row: dict[str, Any]) -> str:
    """One line per worker for the message after a save."""
    parts = [f"worker {row['hostname']} {row['status']}"]
    if row["applied"]:
        parts.append(f"applied {row['applied']}")
    if row["kept"]:
        parts.append(row["kept"])
    return "; ".join(parts)
