"""``parlmt envs``: list task sources and show a task (turns, state, tool docs, ground truth)."""

import argparse
import sys


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("envs", help="list and show environment tasks")
    parser.set_defaults(func=lambda args: parser.print_help())
    commands = parser.add_subparsers(dest="envs_command", metavar="SUBCOMMAND")

    list_parser = commands.add_parser(
        "list", help="task sources with counts and split sizes; with a filter, the matching task ids"
    )
    list_parser.add_argument("--category", help="a source: base, bfcl:miss_func, tau2:retail, py:todo, a task file ...")
    list_parser.add_argument("--split", choices=("train", "dev", "test"), help="only tasks of this split")
    list_parser.set_defaults(func=list_tasks)

    show_parser = commands.add_parser("show", help="one task: turns, initial state, tool docs, ground truth")
    show_parser.add_argument("task_id", help="bfcl:base:0, multi_turn_base_0, tau2:airline:0, py:todo:1 ...")
    show_parser.add_argument("--width", type=int, default=100, help="cut long values to this many characters")
    show_parser.set_defaults(func=show_task)


def list_tasks(args: argparse.Namespace) -> int:
    from parlmt.envs.registry import load_tasks, sources
    from parlmt.envs.splits import SPLITS

    if args.category is None and args.split is None:
        print(f"{'source':<18}{'tasks':>7}" + "".join(f"{s:>7}" for s in SPLITS))
        for source in sources():
            tasks = load_tasks(source)
            counts = [sum(t.meta["split"] == s for t in tasks) for s in SPLITS]
            print(f"{source:<18}{len(tasks):>7}" + "".join(f"{c:>7}" for c in counts))
        return 0
    chosen = [args.category] if args.category else [s for s in sources() if s.startswith("bfcl:")]
    for source in chosen:
        for task in load_tasks(source, split=args.split):
            classes = ",".join(task.meta["classes"])
            print(f"{task.id:<24} {task.meta['split']:<6} turns={len(task.turns):<2} {classes}")
    return 0


def show_task(args: argparse.Namespace) -> int:
    from parlmt.envs.registry import load_task, make_env
    from parlmt.envs.tooldocs import render_tool_docs

    try:
        task = load_task(args.task_id)
    except ValueError as e:
        print(f"parlmt envs show: {e}", file=sys.stderr)
        return 2
    env = make_env(task)
    meta = task.meta
    official = f"  ({meta['official_id']})" if "official_id" in meta else ""
    print(f"{task.id}{official}  split: {meta['split']}  classes: {', '.join(meta['classes'])}")
    if meta.get("long_context"):
        print("long context: the backends pad their state and outputs, as BFCL does")

    print("\nInitial state")
    if not task.initial_state:
        print("  (none: the data as shipped)")
    for name, state in task.initial_state.items():
        if not isinstance(state, dict):  # tau2: a list of initialization actions
            print(f"  {name}: {_cut(repr(state), args.width)}")
            continue
        print(f"  {name}:")
        for key, value in state.items():
            print(f"    {key}: {_cut(repr(value), args.width)}")

    print("\nTurns (user message, then ground truth)")
    for turn, message in enumerate(task.turns):
        if "request" in meta:  # tau2: the policy opens the first message; show its size, not its text
            policy = message.partition("\n</policy>")[0]
            message = f"<policy: {len(policy)} characters> {meta['request']}"
        revealed = [schema["name"] for schema in task.revealed_tools.get(turn, ())]
        note = f"  [reveals: {', '.join(revealed)}]" if revealed else ""
        print(f"  [{turn}] user: {message}{note}")
        if task.ground_truth is not None and "expected_actions" not in meta:  # tau2's are listed below
            calls = [call.canonical() for call in env.ground_truth(turn)]
            print("      truth: " + ("; ".join(calls) if calls else "(none: the request cannot be completed)"))

    if meta.get("expected_actions"):
        print(f"\nExpected actions, in order (reward basis: {meta['reward_basis']})")
        for requestor, call in meta["expected_actions"]:
            print(f"  {requestor}: {_cut(call, args.width)}")
    if meta.get("communicate_info"):
        print("Information the agent must tell the user: " + "; ".join(meta["communicate_info"]))

    print(f"\nTools at turn 0 ({len(task.tools)}, compact docs)")
    print(render_tool_docs(task.tools))
    if task.revealed_tools:
        hidden = [schema for turn in sorted(task.revealed_tools) for schema in task.revealed_tools[turn]]
        print(f"\nTools revealed later ({len(hidden)})")
        print(render_tool_docs(hidden))
    if meta.get("user_tools"):
        print(f"\nThe customer's own tools ({len(meta['user_tools'])}, for the simulated user)")
        print(render_tool_docs(meta["user_tools"]))
    return 0


def _cut(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 3] + "..."
