"""Column mapping: ``--map CANONICAL=COLUMN`` specs, and renaming a file's columns to the canonical names."""

from __future__ import annotations

from collections.abc import Sequence

from causalrm.data import schema
from causalrm.data.feedback_kinds import EVENT_COLUMNS, NEGATIVE_EVENT_COLUMNS
from causalrm.data.io.formats import _Raw
from causalrm.data.io.formatting import _list
from causalrm.errors import InputError


def parse_mapping(specs: Sequence[str] | None) -> dict[str, str]:
    """Parse ``--map`` specs ``["prompt=question", "response=answer,feedback=thumb"]`` into ``{user: canonical}``.

    Each spec holds one or more comma-separated ``CANONICAL=COLUMN`` items.
    """
    mapping: dict[str, str] = {}
    targets: dict[str, str] = {}
    for spec in specs or ():
        for item in str(spec).split(","):
            item = item.strip()
            if not item:
                continue
            if "=" not in item:
                raise InputError(f"--map {item!r}: expected CANONICAL=COLUMN, for example --map prompt=question")
            target, _, source = (part.strip() for part in item.partition("="))
            if not target or not source:
                raise InputError(f"--map {item!r}: expected CANONICAL=COLUMN, for example --map prompt=question")
            _check_target(target, f"--map {item!r}")
            if target in targets and targets[target] != source:
                raise InputError(f"--map: {target!r} is mapped twice (from {targets[target]!r} and {source!r}); "
                                 "map each canonical column once")
            if source in mapping and mapping[source] != target:
                raise InputError(f"--map: column {source!r} is mapped to both {mapping[source]!r} and {target!r}; "
                                 "map each column once")
            mapping[source] = target
            targets[target] = source
    return mapping


# what a column may be mapped to (messages: chat format; implicit event columns: causalrm.data.feedback_kinds)
_TARGETS = (*schema.COLUMNS, schema.MESSAGES, *EVENT_COLUMNS, *NEGATIVE_EVENT_COLUMNS)


def _check_target(target: str, where: str) -> None:
    if target not in _TARGETS:
        raise InputError(f"{where}: unknown canonical column {target!r}; use one of {', '.join(_TARGETS)}")


def _apply_mapping(raw: _Raw, mapping: dict[str, str] | None) -> dict[str, str]:
    """Rename mapped columns in place; return ``{canonical: user column}`` for messages."""
    mapping = dict(mapping or {})
    for source, target in mapping.items():
        _check_target(target, f"mapping {source!r} -> {target!r}")
    cols = raw.df.columns
    missing = [s for s in mapping if s not in cols]
    if missing:
        s = missing[0]
        raise InputError(f"{raw.path}: mapped column {s!r} (for {mapping[s]}) not found; columns found: "
                         f"{_list(cols)}; fix --map {mapping[s]}={s}")
    seen: dict[str, str] = {}
    for source, target in mapping.items():
        if target in seen:
            raise InputError(f"{raw.path}: columns {seen[target]!r} and {source!r} are both mapped to {target!r}; "
                             "map one column per canonical name")
        seen[target] = source
    for source, target in mapping.items():
        if target in cols and target != source and target not in mapping:
            raise InputError(f"{raw.path}: column {source!r} is mapped to {target!r}, but the file already has a "
                             f"column {target!r}; rename or drop one of them (or map {target!r} elsewhere)")
    if mapping:
        renames = {s: t for s, t in mapping.items() if s != t}
        raw.df = raw.df.rename(renames)
        raw.objects = {renames.get(c, c): v for c, v in raw.objects.items()}
    return {t: s for s, t in mapping.items()}
