"""Declarative DSPy signatures of the progress-aware agent: what each module reads and writes.

``Summarize`` turns the conversation so far into a progress summary, ``Plan`` turns the summary
and the current request into the remaining steps, and ``Act`` picks the next tool calls (or the
reply that ends the turn) from the summary, the plan and this turn's observations. How they are
composed lives in ``parlmt.programs``.
"""

import dspy


class Summarize(dspy.Signature):
    """Summarize the progress of this tool-using conversation. Say what has been done and keep every
    fact a later step may need: ids, names, paths, numbers, tokens, current locations, results."""

    conversation: str = dspy.InputField(desc="user turns, tool calls and their results, oldest first")
    summary: str = dspy.OutputField(desc="concise progress summary: what is done, facts that matter later")


class Plan(dspy.Signature):
    """Plan the remaining tool calls that complete the user's current request, in order.
    Use only the available tools; say so when the request cannot be done with them."""

    tools: str = dspy.InputField(desc="available tools with their parameters")
    summary: str = dspy.InputField(desc="progress so far")
    request: str = dspy.InputField(desc="the user's current request")
    observations: str = dspy.InputField(desc="calls already made for this request, with results")
    plan: str = dspy.OutputField(desc="numbered remaining steps, one tool call each")


class Act(dspy.Signature):
    """Make the next tool calls for the user's current request, following the plan and the progress so far.
    Write calls as [func(arg=value), ...] with keyword arguments and literal values. When the request
    is done, or cannot be done with the tools, leave calls empty and write the reply to the user."""

    tools: str = dspy.InputField(desc="available tools with their parameters")
    summary: str = dspy.InputField(desc="progress so far")
    plan: str = dspy.InputField(desc="remaining steps")
    request: str = dspy.InputField(desc="the user's current request")
    observations: str = dspy.InputField(desc="calls already made for this request, with results")
    calls: str = dspy.OutputField(desc="next tool calls as [func(arg=value), ...], or [] when done")
    reply: str = dspy.OutputField(desc="reply to the user when calls is empty, else empty")


__all__ = ["Act", "Plan", "Summarize"]
