"""reproduce: the verdict of each claim from figures, the shared budget, and one tiny run end to
end (structure only: with seconds of training no claim is expected to hold)."""

from pathlib import Path

import pytest

from pipelines.reproduce import main as reproduce_main
from pipelines.sequence.config import TrainConfig
from pipelines.sequence.fit import TrainResult
from pipelines.studies import claims, evidence
from pipelines.studies import reproduce as rp
from pipelines.studies.comparison import ScoreRow


def rows(model: str, accuracies: dict[int, float]) -> list[ScoreRow]:
    return [
        ScoreRow(
            model=model,
            model_type=model,
            run_id=f"{model}-run",
            param_count=1,
            task="copy",
            length=length,
            repeats=None,
            label=f"L{length}",
            bit_acc=accuracy / 100,
            bits_per_seq=0.0,
            train_time_s=1.0,
        )
        for length, accuracy in accuracies.items()
    ]


class FakeEvidence:
    """Evidence with given figures instead of trainings."""

    def __init__(self, copy: dict[str, dict[int, float]], recall: dict | None = None) -> None:
        self.copy = copy
        self.recall = recall or {}

    def copy_rows(self, model: str) -> list[ScoreRow]:
        return rows(model, self.copy[model])

    def copy_run(self, model: str):
        metrics = {f"bit_acc_L{n}": a / 100 for n, a in self.copy[model].items()}
        metrics.update(reached_stop_at=1.0, steps_to_stop_at=400.0)
        config = TrainConfig()
        config.resolve()
        return config, TrainResult(f"{model}-run", 0.0, 500, 30.0, metrics)

    def associative_recall(self):
        return TrainConfig(), TrainResult(
            "ar-run", self.recall["best"], 1, 1.0, self.recall["metrics"]
        )


def copy_figures(*lengths_to_accuracy):
    return dict(zip(evidence.COPY_LENGTHS, lengths_to_accuracy, strict=True))


PAPER_LIKE = {
    "ntm": copy_figures(100, 100, 100, 100, 99.95, 99.9),
    "lstm": copy_figures(100, 100, 99.8, 71.4, 56.4, 53.9),
}


def test_an_lstm_that_fits_its_lengths_and_fails_beyond_reproduces_both_lstm_claims():
    evidence = FakeEvidence(PAPER_LIKE)
    assert claims.lstm_copy(evidence).verdict == claims.REPRODUCED
    finding = claims.ntm_vs_lstm(evidence)
    assert finding.verdict == claims.REPRODUCED
    assert "LSTM 100.0 / 100.0 / 99.8 / 71.4 / 56.4 %" in finding.ours
    assert "LSTM 100 / 100 / 94 / 50 / 50 %" in finding.published


def test_an_lstm_that_did_not_fit_or_that_generalized_does_not_reproduce():
    unfitted = {**PAPER_LIKE, "lstm": copy_figures(90, 80, 70, 60, 55, 52)}
    assert claims.lstm_copy(FakeEvidence(unfitted)).verdict == claims.NOT_REPRODUCED
    general = {**PAPER_LIKE, "lstm": copy_figures(100, 100, 100, 99, 98, 97)}
    assert claims.lstm_copy(FakeEvidence(general)).verdict == claims.NOT_REPRODUCED
    assert claims.ntm_vs_lstm(FakeEvidence(general)).verdict == claims.NOT_REPRODUCED


def test_ntm_copy_holds_only_when_length_120_is_copied():
    assert claims.ntm_copy(FakeEvidence(PAPER_LIKE)).verdict == claims.REPRODUCED
    perfect = {**PAPER_LIKE, "ntm": copy_figures(100, 100, 100, 100, 100, 100)}
    assert claims.ntm_copy(FakeEvidence(perfect)).verdict == claims.BETTER
    failing = {**PAPER_LIKE, "ntm": copy_figures(100, 100, 100, 90, 70, 60)}
    assert claims.ntm_copy(FakeEvidence(failing)).verdict == claims.NOT_REPRODUCED


@pytest.mark.parametrize(
    ("episodes", "verdict"),
    [
        (25_600, claims.REPRODUCED),
        (32_000, claims.REPRODUCED),
        (64_000, claims.NOT_REPRODUCED),
        (None, claims.NOT_REPRODUCED),
    ],
)
def test_associative_recall_is_judged_against_the_papers_30000_episodes(episodes, verdict):
    metrics = {"sequences_seen": 100_000.0, "bit_acc_L6": 0.999, "bit_acc_L12": 0.98}
    if episodes is not None:
        metrics["sequences_to_stop_at"] = float(episodes)
    finding = claims.associative_recall(FakeEvidence({}, {"best": 0.05, "metrics": metrics}))
    assert finding.verdict == verdict
    assert "99.90 % at 6 items, 98.00 % at 12 items" in finding.ours


def test_the_budget_is_shared_by_weight_and_unused_time_goes_to_later_trainings(monkeypatch):
    now = [0.0]
    monkeypatch.setattr(evidence.time, "monotonic", lambda: now[0])
    budget = evidence.Budget(10.0, {"a": 1.0, "b": 1.0, "c": 2.0})
    assert budget.take("a") == pytest.approx(2.5)
    now[0] = 30.0  # "a" used 0.5 of its 2.5 minutes
    assert budget.take("b") == pytest.approx(9.5 / 3)
    now[0] = 600.0  # past the deadline: the last training still runs briefly
    assert budget.take("c") == evidence.MIN_MINUTES


def test_unknown_claims_are_refused_before_any_run(client, capsys):
    assert reproduce_main(["--claims", "ntm_copy,bogus"]) == 2
    assert "--claims: unknown bogus" in capsys.readouterr().err
    assert client.get_experiment_by_name("reproduce") is None


TINY = [
    "--budget_minutes",
    "0.1",
    "--batches_per_epoch",
    "2",
    "--val_size",
    "16",
    "--test_size",
    "8",
]


@pytest.mark.slow
def test_a_claim_subset_is_one_parent_a_child_per_claim_and_copy_trained_once(client):
    assert reproduce_main([*TINY, "--claims", "ntm_vs_lstm,lstm_copy"]) == 0
    experiment = client.get_experiment_by_name("reproduce")
    runs = client.search_runs([experiment.experiment_id])
    assert all(run.info.status == "FINISHED" for run in runs)
    (parent,) = [run for run in runs if "mlflow.parentRunId" not in run.data.tags]
    parent_id = parent.info.run_id
    claim_runs = [run for run in runs if run.data.tags.get("mlflow.parentRunId") == parent_id]
    # in CLAIMS order, whatever the order given
    assert [run.data.tags["ntmlab.claim"] for run in sorted(claim_runs, key=start)] == [
        "lstm_copy",
        "ntm_vs_lstm",
    ]
    trainings = [run for run in runs if run.data.tags.get("ntmlab.pipeline") == "train"]
    assert sorted(run.data.params["model.name"] for run in trainings) == ["lstm", "ntm"]
    by_claim = {run.data.tags["ntmlab.claim"]: run for run in claim_runs}
    lstm_run = next(r for r in trainings if r.data.params["model.name"] == "lstm")
    assert lstm_run.data.tags["mlflow.parentRunId"] == by_claim["lstm_copy"].info.run_id
    assert by_claim["ntm_vs_lstm"].data.tags["ntmlab.evidence_runs"].endswith(lstm_run.info.run_id)
    report = Path(client.download_artifacts(parent.info.run_id, rp.REPORT)).read_text()
    assert report.startswith("| claim | source | published | ours | verdict |")
    assert [line.split(" | ")[0] for line in report.splitlines()[2:]] == [
        "| lstm_copy",
        "| ntm_vs_lstm",
    ]
    assert parent.data.tags["mlflow.note.content"] == report
    verdicts = (claims.REPRODUCED, claims.BETTER, claims.NOT_REPRODUCED)
    assert all(run.data.tags["ntmlab.verdict"] in verdicts for run in claim_runs)


def start(run) -> int:
    return run.info.start_time


def test_every_claim_has_a_runner_in_running_order():
    assert tuple(claims.CLAIMS) == evidence.CLAIM_NAMES == tuple(claims.TRAININGS_OF)
