"""Config dataclasses as command lines, TRL style: each field's ``help`` metadata is its documentation
and its ``--option`` help. Used by ``parlmt eval``, ``parlmt optimize``, ``parlmt train`` and ``parlmt demo``."""

import argparse
import dataclasses
import types


def option(text: str, default=None, aliases: tuple[str, ...] = (), **kwargs):
    """A dataclass field documented by ``text``; ``aliases`` are more flags for its option (an older name
    kept working); ``default_factory`` in ``kwargs`` replaces ``default``."""
    metadata = {"help": text, "aliases": aliases}
    if "default_factory" in kwargs:
        return dataclasses.field(metadata=metadata, **kwargs)
    return dataclasses.field(default=default, metadata=metadata, **kwargs)


def add_options(parser: argparse.ArgumentParser, config_class: type) -> None:
    """One ``--option`` per field of ``config_class`` (help: the field's doc), defaulting to unset so
    that only the options given override the defaults or a preset."""
    for item in dataclasses.fields(config_class):
        kind = _base_type(item.type)
        flags = [f"--{item.name.replace('_', '-')}", *item.metadata.get("aliases", ())]
        unsettable = _optional(item.type) and item.default is not None  # else a default could never be unset
        default = f"default: {item.default}" + ("; none unsets it" if unsettable else "")
        help_text = f"{item.metadata.get('help', '')} ({default})".replace("%", "%%")
        if kind is bool:
            parser.add_argument(*flags, action=argparse.BooleanOptionalAction, default=argparse.SUPPRESS,
                                help=help_text)
        else:
            parser.add_argument(*flags, type=_or_none(kind) if unsettable else kind, default=argparse.SUPPRESS,
                                help=help_text)


def add_command(subparsers: argparse._SubParsersAction, name: str, config_class: type, run, help: str
                ) -> argparse.ArgumentParser:
    """The subcommand ``name`` running ``run(args)``: ``config_class``'s docstring is its description and its
    fields its options (``add_options``)."""
    parser = subparsers.add_parser(name, help=help, description=config_class.__doc__)
    add_options(parser, config_class)
    parser.set_defaults(func=run)
    return parser


def given_options(config_class: type, args: argparse.Namespace) -> dict:
    """The fields of ``config_class`` given on the command line."""
    names = {item.name for item in dataclasses.fields(config_class)}
    return {key: value for key, value in vars(args).items() if key in names}


def _optional(annotation) -> bool:
    return isinstance(annotation, types.UnionType) and type(None) in annotation.__args__


def _or_none(kind: type):
    """``kind``'s parser that also reads ``none`` as unset."""
    def parse(text: str):
        return None if text.lower() == "none" else kind(text)

    parse.__name__ = kind.__name__  # argparse names the type in its error: "invalid int value"
    return parse


def _base_type(annotation) -> type:
    """``int`` for ``int`` and ``int | None``, and so on."""
    if isinstance(annotation, types.UnionType):
        return next(arg for arg in annotation.__args__ if arg is not type(None))
    return annotation
