"""Batched evaluation: episodes played at once share each forward pass, and play exactly as one at a time."""

from parlmt.envs import load_tasks
from parlmt.models import ModelConfig, TransformersLM
from parlmt.programs import build_program
from parlmt.programs.evaluate import run_episodes


class CountingLM(TransformersLM):
    """The real tiny model, counting ``generate_ids`` passes and the prompts in each."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.passes: list[int] = []

    def generate_ids(self, prompts, **options):
        self.passes.append(len(prompts))
        return super().generate_ids(prompts, **options)


def module_outputs(trajectories) -> list[tuple]:
    return [(t.task_id, c.module, c.turn, c.step, str(c.outputs)) for t in trajectories for c in t.module_calls]


def test_batched_episodes_play_as_one_at_a_time_with_fewer_passes(tiny_model_dir, tmp_path):
    # float64: batched and single forward passes then agree on every greedy token, on any CPU kind
    lm = CountingLM(ModelConfig(model=str(tiny_model_dir), dtype="float64"), max_tokens=6)
    tasks = load_tasks("py:todo")[:3]
    program = build_program("progress", max_steps_per_turn=1)
    alone = run_episodes(program, tasks, lm, tmp_path / "alone.jsonl", threads=1)
    single_passes, lm.passes = list(lm.passes), []
    batched = run_episodes(program, tasks, lm, tmp_path / "batched.jsonl", threads=3)
    assert [t.task_id for t in batched] == [task.id for task in tasks]
    assert module_outputs(batched) == module_outputs(alone) and module_outputs(alone)
    assert sum(lm.passes) == sum(single_passes) == len(single_passes)  # every call served once...
    assert len(lm.passes) < len(single_passes) and max(lm.passes) == 3  # ...in shared passes of up to 3


def test_a_batched_lane_that_raises_fails_its_episode_not_the_others(tiny_model_dir, tmp_path):
    lm = TransformersLM(ModelConfig(model=str(tiny_model_dir), dtype="float64"), max_tokens=4)
    tasks = load_tasks("py:todo")[:3]
    program = build_program("progress", max_steps_per_turn=1)
    broken = tasks[1]

    original = program.forward

    def forward(task):
        if task.id == broken.id:
            raise RuntimeError("lane broke")
        return original(task=task)

    program.forward = forward
    trajectories = run_episodes(program, tasks, lm, tmp_path / "out.jsonl", threads=3)
    errors = [t.error_type for t in trajectories]  # the random model's own episodes fail, but are played
    assert errors[1] == "parlmt:program_error" and "parlmt:program_error" not in errors[::2]
    assert "lane broke" in trajectories[1].reason
