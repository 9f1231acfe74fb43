"""Command line: ``databrittle check-config FILE``, ``databrittle budget FILE`` and ``databrittle stage NAME key=value ...``.

``budget`` prints how many networks a config trains per output (:mod:`databrittle.budget`),
and GPU-hours with ``--seconds-per-model``.

``stage`` runs one :mod:`databrittle.stages` function without Snakemake (values are YAML,
so ``k=16`` is an int and ``esvm='{C: 0.1}'`` a mapping), e.g.::

    databrittle stage rank_method method=esvm-moco train_data=results/digits/data/train.npz ...
"""

from __future__ import annotations

import argparse
import sys

import yaml

from databrittle.errors import InputError


def _parse_assignments(items: list[str]) -> dict:
    kwargs = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise InputError(f"argument {item!r}: expected key=value")
        kwargs[key] = yaml.safe_load(value)
    return kwargs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="databrittle", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    check = commands.add_parser("check-config", help="validate a config file against the schema")
    check.add_argument("config")
    budget = commands.add_parser("budget", help="count the models a config trains (and GPU-hours)")
    budget.add_argument("config")
    budget.add_argument("--seconds-per-model", type=float, default=None,
                        help="measured seconds per counterfactual training on your GPU")
    stage = commands.add_parser("stage", help="run one pipeline stage function")
    stage.add_argument("name")
    stage.add_argument("arguments", nargs="*", help="key=value (YAML values)")
    args = parser.parse_args(argv)
    try:
        if args.command == "check-config":
            from databrittle.config import load_config

            load_config(args.config)
            print(f"{args.config}: valid")
        elif args.command == "budget":
            from databrittle.budget import budget_report
            from databrittle.config import load_config

            print(budget_report(load_config(args.config), args.seconds_per_model))
        else:
            from databrittle import stages

            function = getattr(stages, args.name, None)
            if function is None or args.name.startswith("_"):
                raise InputError(f"stage {args.name!r}: no such stage")
            function(**_parse_assignments(args.arguments))
    except InputError as error:
        print(f"databrittle: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
