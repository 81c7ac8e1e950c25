"""The slim profile of a project: learned once (kept in slim.json, so a resume reuses it), judged
(did the penalty prune anything?) and set beside doubling for the report."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, TextIO

import zoo

from cnnzoo.files import write_atomic

__all__ = ["SLIM_FILE", "learn_or_load", "read_slim", "slim_reference", "pruning_note",
           "NEARLY_ALL_ALIVE"]

SLIM_FILE = "slim.json"
# A profile that keeps at least this fraction of the wide network's channels pruned (nearly)
# nothing: its "learned" widths are the wide network's constant profile.
NEARLY_ALL_ALIVE = 0.9


def pruning_note(result: Any) -> str | None:
    """What to change when slim left (nearly) every channel alive; None when it pruned."""
    wide, live = sum(result.wide), sum(result.profile)
    if live < NEARLY_ALL_ALIVE * wide:
        return None
    return (f"slim pruned almost nothing ({live} of {wide} channels alive): the profile is the "
            f"wide network's, not a learned one; raise --slim-strength (now {result.strength:g}) "
            f"or --slim-epochs (now {result.epochs})")


def learn_or_load(config: Any, hypermodel: Any, data: Any, x: Any, y: Any, project_dir: Path,
                  progress: TextIO | None) -> Any:
    """The project's SlimResult: read from slim.json, else learned from (x, y) and saved."""
    import keras

    from tuning.searches import slim

    saved = read_slim(project_dir)
    if saved is not None:
        return saved
    defaults = {hp.name: hp.default for hp in hypermodel.declared_space().space}
    resource = "params"
    if config.max_params is not None or config.max_macs is not None:
        # The penalty weighs the resource whose budget binds the fitted network (with both).
        resource = slim.binding_resource(
            [hypermodel.filters[1]] * hypermodel.depth[1], max_params=config.max_params,
            max_macs=config.max_macs, input_shape=hypermodel.input_shape,
            num_classes=hypermodel.num_classes, block=defaults["block"],
            kernel_size=defaults["kernel_size"], downsample=defaults["downsample"],
            downsample_every=hypermodel.downsample_every)
    say = progress is not None and config.verbose
    if say:
        print(f"slim: training the wide model ({hypermodel.depth[1]} layers x "
              f"{hypermodel.filters[1]} kernels, {resource}-weighted L1 on BatchNorm scales)",
              file=progress, flush=True)
    kwargs: dict[str, Any] = {}
    if config.slim_strength is not None:
        kwargs["strength"] = config.slim_strength
    result = slim.learn_profile(
        x, y, input_shape=hypermodel.input_shape, num_classes=hypermodel.num_classes,
        depth=hypermodel.depth[1], max_filters=hypermodel.filters[1], block=defaults["block"],
        kernel_size=defaults["kernel_size"], downsample=defaults["downsample"],
        downsample_every=hypermodel.downsample_every, resource=resource,
        # Not --epochs: a trial's few epochs are too few steps for the penalty to drive unneeded
        # channels to zero (nothing is pruned); the recipe's epochs for the data are enough.
        epochs=config.slim_epochs, learning_rate=defaults["learning_rate"],
        validation_data=(data.x_val, data.y_val), seed=config.seed,
        verbose=0 if config.verbose < 2 else 2, **kwargs)
    keras.backend.clear_session()
    write_atomic(project_dir / SLIM_FILE, json.dumps(result.to_dict(), indent=1) + "\n")
    if say:
        print(f"slim: learned profile {'-'.join(map(str, result.profile))} in {result.seconds:.0f}s",
              file=progress, flush=True)
        note = pruning_note(result)
        if note:
            print(f"slim: warning: {note}", file=progress, flush=True)
    return result


def read_slim(project_dir: Path) -> Any:
    """The SlimResult saved in the project, or None (missing or damaged: learn it again)."""
    from tuning.searches import slim

    try:
        return slim.SlimResult.from_dict(json.loads((project_dir / SLIM_FILE).read_text(encoding="utf-8")))
    except (OSError, ValueError):
        return None


def slim_reference(learned: Any, hypermodel: Any) -> dict[str, list[int]] | None:
    """The learned profile as the trial builds it and doubling at the same depth, both for the
    slim network's own architecture and fitted to the budget (as learned, without one)."""
    if learned is None:
        return None
    from tuning.searches import slim

    budgets = hypermodel.budgets.size_budgets
    try:
        # within --filters, as the trial's budget filling builds it
        fitted = (slim.fit_profile(learned, **budgets, min_filters=hypermodel.filters[0],
                                   max_filters=hypermodel.filters[1])
                  if budgets else list(learned.profile))
        doubling = zoo.plan("doubling", depth=len(learned.profile), **learned.arch,
                            **(budgets or {"base_filters": learned.profile[0]}))
    except ValueError:
        return None
    return {"slim": list(fitted), "doubling": list(doubling)}
