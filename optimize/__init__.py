"""PAG data: teacher prompt optimization and verified bootstrapping of the PARL-MT training set.

- ``config``: ``PAGConfig``, every setting of a run (the CLI flags have the same names).
- ``prompts``: stock DSPy optimizers (BootstrapFewShot, MIPROv2, GEPA) on the teacher program.
- ``pag``: playing tasks with the teacher (the ground-truth oracle of ``programs.oracle``, or an LM
  with ground-truth guidance), step verification (checker + model-aware), resumable shards.
- ``dataset``: the HF dataset, SFT chat rows and dataset card built from the shards.
- ``pipeline``: one run end to end as one MLflow run; ``python optimize.py`` / ``parlmt optimize`` call it.

Names are imported on first use (PEP 562) so that ``parlmt --help`` does not load DSPy.
"""

from parlmt import lazy_exports

_EXPORTS = {
    "PAGConfig": "config", "run": "pipeline", "bootstrap": "pag", "StudentCheck": "pag", "write_dataset": "dataset",
    "GuidedPlan": "pag", "compile_program": "prompts",
}

__all__ = sorted(_EXPORTS)

__getattr__ = lazy_exports(__name__, _EXPORTS)
