"""The reproduce pipeline's loop: one parent run, a child per claim, the report. The budget
is in :mod:`pipelines.studies.evidence`, the claims in :mod:`pipelines.studies.claims`, and
what the command does in :mod:`pipelines.reproduce` (its ``--help``).
"""

from __future__ import annotations

from pipelines.common.config import flatten_params
from pipelines.studies.claims import CLAIMS, TRAININGS_OF, Finding, report_markdown
from pipelines.studies.evidence import WEIGHTS, Budget, Evidence, ReproduceConfig
from pipelines.tracking.runs import tracked_run

REPORT = "reproduction.md"


def reproduce(config: ReproduceConfig) -> tuple[str, list[Finding]]:
    """Parent run, a child per claim; returns the parent id and the findings."""
    chosen = [claim for claim in CLAIMS if not config.claims or claim in config.claims]
    needed = {name for claim in chosen for name in TRAININGS_OF[claim]}
    budget = Budget(config.budget_minutes, {k: v for k, v in WEIGHTS.items() if k in needed})
    evidence = Evidence(config, budget)
    findings: list[Finding] = []
    tags = {"ntmlab.pipeline": "reproduce"}
    with tracked_run(config.experiment_name, "reproduce", tags) as parent:
        parent.outbox.log_params({k: v for k, v in flatten_params(config).items() if v is not None})
        for claim in chosen:
            with tracked_run(
                config.experiment_name, claim, {**tags, "ntmlab.claim": claim}, nested=True
            ) as child:
                finding = CLAIMS[claim](evidence)
                evidence_runs = ",".join(finding.run_ids)
                child.outbox.set_tags(
                    {"ntmlab.verdict": finding.verdict, "ntmlab.evidence_runs": evidence_runs}
                )
                child.describe(report_markdown([finding]))
            findings.append(finding)
            print(f"reproduce: {claim}: {finding.verdict} ({finding.ours})", flush=True)
        report = report_markdown(findings)
        parent.outbox.log_text(report, REPORT)
        parent.report("reproduce", report)
    return parent.run_id, findings
