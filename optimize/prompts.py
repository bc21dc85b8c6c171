"""Teacher prompt optimization with stock DSPy optimizers, scored on the dev split before and after."""

import logging

import dspy

from parlmt.programs import examples, feedback, turn_accuracy

log = logging.getLogger(__name__)


def score(program: dspy.Module, lm: dspy.BaseLM, task_ids: list[str], threads: int) -> float:
    """Mean turn accuracy of ``program`` on ``task_ids`` (official checker verdicts), in [0, 1]."""
    if not task_ids:
        return 0.0
    with dspy.context(lm=lm):
        result = dspy.Evaluate(devset=examples(task_ids), metric=turn_accuracy, num_threads=threads,
                               display_progress=True, provide_traceback=True)(program)
    return result.score / 100


def compile_program(program: dspy.Module, optimizer: str, lm: dspy.BaseLM, train_ids: list[str],
                    threads: int) -> dspy.Module:
    """``program`` optimized on the train tasks by ``optimizer`` (bootstrap, mipro or gepa)."""
    trainset = examples(train_ids)
    if optimizer == "bootstrap":
        # Demos carry the whole tool docs, so few of them keep prompts within small models' context.
        teleprompter = dspy.BootstrapFewShot(metric=turn_accuracy, metric_threshold=1.0, max_bootstrapped_demos=1,
                                             max_labeled_demos=0, max_rounds=1)
        compile_kwargs = {}
    elif optimizer == "mipro":
        teleprompter = dspy.MIPROv2(metric=turn_accuracy, auto="light", num_threads=threads,
                                    max_bootstrapped_demos=1, max_labeled_demos=0, verbose=False)
        compile_kwargs = {"valset": trainset}
    elif optimizer == "gepa":
        teleprompter = dspy.GEPA(metric=feedback, auto="light", reflection_lm=lm, num_threads=threads,
                                 track_stats=False)
        compile_kwargs = {"valset": trainset}
    else:
        raise ValueError(f"unknown optimizer {optimizer!r}: use bootstrap, mipro or gepa")
    log.info("optimizing the teacher program with %s on %d train tasks", optimizer, len(trainset))
    with dspy.context(lm=lm):
        return teleprompter.compile(program, trainset=trainset, **compile_kwargs)
