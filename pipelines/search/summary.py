"""What a study shows in its parent run: trial counts, the best trial, a table of trials
(the run's description) and Optuna's plots."""

from __future__ import annotations

import json
import sys

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
from optuna import Study
from optuna.trial import TrialState

from pipelines.search.config import HpoConfig, seeded, value_name
from pipelines.tracking.registry import CHAMPION
from pipelines.tracking.runs import TrackedRun


def log_summary(run: TrackedRun, study: Study, config: HpoConfig) -> None:
    trials = study.get_trials(deepcopy=False)
    counts = {state.name.lower(): 0 for state in TrialState}
    for trial in trials:
        counts[trial.state.name.lower()] += 1
    outbox = run.outbox
    metrics = {f"trials_{name}": count for name, count in counts.items() if count}
    metrics["total_train_steps"] = sum(t.user_attrs.get("steps", 0) for t in trials)
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    if complete:
        metrics["best_value"] = study.best_trial.value
        if seeded(config):
            reached = study.best_trial.user_attrs.get("seeds_reached", 0)
            metrics["best_success_rate"] = reached / config.seeds_per_trial
    outbox.log_metrics(metrics, step=0)
    run.report("hpo", trials_markdown(study, config))
    if not complete:
        return
    best = study.best_trial
    outbox.set_tags(
        {
            "best_trial_number": str(best.number),
            "best_trial_run_id": best.user_attrs.get("run_id", ""),
            **{f"best.{name}": str(value) for name, value in best.params.items()},
        }
    )
    outbox.log_text(
        json.dumps({"value": best.value, "params": best.params}, indent=2), "optuna/best_trial.json"
    )
    _log_plots(outbox, study)


def trials_markdown(study: Study, config: HpoConfig) -> str:
    """The parent run's description: the study's trials, best first."""
    trials = study.get_trials(deepcopy=False)
    finished = [t for t in trials if t.state == TrialState.COMPLETE]
    reverse = config.direction == "maximize"
    ordered = sorted(finished, key=lambda t: t.value, reverse=reverse)
    ordered += [t for t in trials if t.state != TrialState.COMPLETE]
    names = list(dict.fromkeys(name for t in trials for name in t.params))
    value = value_name(config)
    judged = f"{value} ({config.direction})"
    extra = []
    if seeded(config):
        judged = (
            f"{value} over {config.seeds_per_trial} seeds from {config.seed}: seeds that missed "
            f"{config.metric} <= {config.threshold:g}, plus the median fraction of "
            f"{config.trial_max_steps} steps the others took (lower is better)"
        )
        extra = ["seeds reached"]
    lines = [
        f"Study `{config.study_name}`: {len(finished)} complete of {len(trials)} trials, "
        f"{judged}; the best model is `models:/{config.register_as}@{CHAMPION}`.",
        "",
        "| trial | state | " + " | ".join([value, *extra, *names]) + " |",
        "|---|---|" + "---|" * (1 + len(extra) + len(names)),
    ]
    for trial in ordered:
        cells = ["" if trial.value is None else f"{trial.value:.4g}"]
        if extra:
            reached = trial.user_attrs.get("seeds_reached")
            cells.append("" if reached is None else f"{reached}/{config.seeds_per_trial}")
        cells += [_short(trial.params.get(name, "")) for name in names]
        lines.append(f"| {trial.number} | {trial.state.name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _short(value) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def _log_plots(outbox, study: Study) -> None:
    from optuna.visualization import matplotlib as plots

    for name, draw in (
        ("optimization_history", plots.plot_optimization_history),
        ("param_importances", plots.plot_param_importances),
        ("parallel_coordinate", plots.plot_parallel_coordinate),
        ("intermediate_values", plots.plot_intermediate_values),
    ):
        try:
            axes = draw(study)
        except (ValueError, RuntimeError, ZeroDivisionError) as error:  # too few trials
            print(f"hpo: skipped the {name} plot ({error})", file=sys.stderr)
            continue
        figure = axes.figure if hasattr(axes, "figure") else axes.flat[0].figure
        try:
            outbox.log_figure(figure, f"optuna/{name}.png")
        finally:
            plt.close(figure)
