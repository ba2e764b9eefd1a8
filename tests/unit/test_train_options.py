"""Training options are declared once (TrainConfig / AugmentConfig fields): `python -m
lcz_model.train` and `manage.py train_msunet` accept the same options with the same defaults,
derived from the fields, so a new field cannot be missed by either."""
from __future__ import annotations

import dataclasses

import pytest

from annotator.management.commands.train_msunet import Command
from lcz_model.data import AugmentConfig
from lcz_model.train import TrainConfig, build_parser, config_from_args, train_options

ARGV = ["--dataset", "P", "--out", "R"]


def _options(parser) -> dict:
    """dest -> what a user sees of the option: its flags, default, choices, nargs, required."""
    return {a.dest: (tuple(a.option_strings), a.default, a.choices, a.nargs, a.required, a.type)
            for a in parser._actions if a.option_strings and a.dest in {d for *_, d in train_options()}}


@pytest.fixture(scope="module")
def parsers():
    return build_parser(), Command().create_parser("manage.py", "train_msunet")


def test_every_field_is_an_option_or_declared_without_one():
    declared = {f.name for f in dataclasses.fields(TrainConfig)}
    declared |= {f"augment_{f.name}" for f in dataclasses.fields(AugmentConfig)}
    with_option = {dest for *_, dest in train_options()}
    without = {f.name for f in dataclasses.fields(TrainConfig)
               if f.metadata.get("nested") or not f.metadata.get("cli", True)}
    without |= {f"augment_{f.name}" for f in dataclasses.fields(AugmentConfig) if not f.metadata.get("cli", True)}
    assert with_option | without == declared and not with_option & without
    assert without == {"augment", "augment_scale", "augment_rare_classes"}
    for f, _, _ in train_options():
        assert f.metadata["help"], f.name


def test_cli_and_command_have_the_same_options_and_defaults(parsers):
    cli, cmd = parsers
    ours = _options(cli)
    assert set(ours) == {dest for *_, dest in train_options()}
    assert _options(cmd) == ours
    # the defaults are the fields' defaults, through either parser
    want = TrainConfig(dataset="P", out="R")
    assert config_from_args(cli.parse_args(ARGV)) == want
    assert config_from_args(vars(cmd.parse_args(ARGV))) == want


def test_options_reach_the_config_through_either_parser(parsers):
    argv = ARGV + ["--variant", "psg", "--epochs", "3", "--betas", "0.8", "0.9", "--no-gradnorm",
                   "--augment-scope", "all", "--no-pure-always", "--rare-oversample", "2",
                   "--model", "token_pool=all", "--no-progress", "--max-minutes", "1.5"]
    cli, cmd = parsers
    a, b = config_from_args(cli.parse_args(argv)), config_from_args(vars(cmd.parse_args(argv)))
    assert a == b
    assert (a.variant, a.epochs, a.betas, a.gradnorm, a.progress, a.max_minutes) == ("psg", 3, (0.8, 0.9), False,
                                                                                     False, 1.5)
    assert (a.augment["scope"], a.augment["pure_always"], a.augment["rare_oversample"]) == ("all", False, 2)
    assert a.model_kwargs == {"token_pool": "all"}


def test_a_config_round_trips_through_its_dict():
    c = config_from_args(build_parser().parse_args(ARGV + ["--augment-scope", "none", "--seed", "4"]))
    assert TrainConfig.from_any(c.to_dict()) == c
