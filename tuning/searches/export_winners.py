"""The bridge from tuning to serving: export a search's best models as versions of one served
model, and check a served model name. Every other tuning module stays clear of serving (its
imports are here, inside the functions, so importing tuning never loads serving's protos).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = ["export_winners", "validate_model_name"]


def validate_model_name(name: str) -> str:
    """`name` when TF Serving accepts it as a model name; ValueError saying why otherwise."""
    from serving.names import validate_model_name as validate

    return validate(name)


def export_winners(ranked: list[tuple[Any, Any]], data: Any, tuner: Any, export_dir: Any,
                   name: str, metric: str, project: str) -> list[Any]:
    """Export the (trial, model) pairs, best first, as versions of `name` under `export_dir`.

    The best is exported last (so `latest` serves it) and labelled `stable`. A rerun of a finished
    search whose models are already there adds no copies: the earlier versions are returned.
    """
    from serving.exporter.savedmodel import ExportedVersion, export as export_model
    from serving.exporter.model_server_config import set_version_label
    from serving.exporter.versions import version_dirs

    where = str(Path(tuner.project_dir).resolve())
    previous = _previous_exports(version_dirs(Path(export_dir) / name), where)
    if all(trial.trial_id in previous for trial, _ in ranked):
        out = [ExportedVersion(previous[t.trial_id][1], name, previous[t.trial_id][0])
               for t, _ in ranked]
        set_version_label(export_dir, name, "stable", out[0].version)
        return out
    out = []
    for rank, (trial, model) in reversed(list(enumerate(ranked, 1))):
        loss, acc = model.evaluate(data.x_test, data.y_test, verbose=0)[:2]
        meta = {"hyperparameters": {k: v for k, v in trial.hyperparameters.values.items()
                                    if not k.startswith("tuner/")},
                "metrics": {metric: float(trial.metrics.get_best_value(metric)),
                            "test_loss": float(loss), "test_accuracy": float(acc)},
                "search": {"project": project, "directory": where, "trial": trial.trial_id,
                           "rank": rank}}
        # keras-tuner reloads the trial's trained weights into a fresh build: trained, though its
        # new optimizer has taken no step.
        out.append(export_model(model, export_dir, name=name, class_names=list(data.class_names),
                                metadata=meta, trained=True))
    out.reverse()  # best first
    set_version_label(export_dir, name, "stable", out[0].version)
    return out


def _previous_exports(versions: dict[int, Path], project_dir: str) -> dict[str, tuple[int, Path]]:
    """trial id -> (version, path) of versions this project exported before (newest wins)."""
    from serving.exporter.metadata import read_metadata  # serving owns the on-disk format

    found: dict[str, tuple[int, Path]] = {}
    for version, path in sorted(versions.items()):
        try:
            search_meta = read_metadata(path)["metadata"]["search"]
        except (ValueError, KeyError, TypeError):
            continue
        if search_meta.get("directory") == project_dir:
            found[str(search_meta.get("trial"))] = (version, path.resolve())
    return found
