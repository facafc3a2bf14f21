"""One path from a dataclass to command-line flags and back (faceflow.runtime.flags): a field's help
shows in --help, a preset value becomes the default, an explicit flag wins, aliases parse to the
same field; TrainConfig's flags (`faceflow train`) and the harness flags of `reenact train`."""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field

import pytest

from faceflow.cli import HelpFormatter
from faceflow.engine.config import TrainConfig, add_common_arguments, config_from_args
from faceflow.errors import FaceflowError
from faceflow.runtime.flags import add_dataclass_arguments, dataclass_from_args, flag_name


@dataclass
class Options:
    steps: int = field(default=100, metadata={"help": "optimisation steps"})
    rate: float = field(default=0.5, metadata={"help": "learning rate"})
    mode: str = field(default="fast", metadata={"help": "how to run", "choices": ("fast", "slow")})
    dirs: list[str] = field(default_factory=list, metadata={"help": "input folders", "metavar": "DIR"})
    scales: list[float] = field(default_factory=lambda: [0.5, 0.7], metadata={"help": "fractions"})
    init: str | None = field(default=None, metadata={"help": "initial weights"})
    verbose: bool = field(default=False, metadata={"help": "say more"})


PRESETS = {"tiny": {"steps": 10}, "big": {"steps": 5000, "rate": 0.1}}


def _parser(**kw) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="demo", formatter_class=HelpFormatter)
    add_dataclass_arguments(p, Options, PRESETS, **kw)
    return p


def _help(p: argparse.ArgumentParser) -> str:
    return " ".join(p.format_help().split())


def test_flag_names_types_and_help():
    assert flag_name("batch_size") == "--batch-size"
    text = _help(_parser())
    assert "--steps STEPS optimisation steps (default: from the preset: tiny 10, big 5000)" in text
    assert "--rate RATE learning rate (default: from the preset: big 0.1)" in text
    assert "--mode {fast,slow} how to run (default: fast)" in text
    assert "--dirs DIR [DIR ...] input folders --scales" in text  # an empty default is not shown
    assert "fractions (default: 0.5 0.7)" in text
    assert "--init INIT initial weights --verbose say more" in text
    args = _parser().parse_args(["--steps", "3", "--scales", "0.2", "0.4", "--dirs", "a", "b", "--verbose"])
    assert (args.steps, args.scales, args.dirs, args.verbose, args.rate) == (3, [0.2, 0.4], ["a", "b"], True, None)
    with pytest.raises(SystemExit):
        _parser().parse_args(["--mode", "medium"])


def test_preset_values_are_defaults_and_given_flags_win():
    p = _parser()
    o = dataclass_from_args(Options, p.parse_args([]), PRESETS["big"])
    assert (o.steps, o.rate, o.mode, o.dirs, o.verbose) == (5000, 0.1, "fast", [], False)
    o = dataclass_from_args(Options, p.parse_args(["--steps", "7", "--verbose"]), PRESETS["big"])
    assert (o.steps, o.rate, o.verbose) == (7, 0.1, True)
    o = dataclass_from_args(Options, p.parse_args(["--steps", "7"]), PRESETS["big"], steps=1, init="w.pt")
    assert (o.steps, o.init) == (1, "w.pt")  # fixed values win over everything
    assert dataclass_from_args(Options, p.parse_args([]), {"steps": 2, "not_a_field": 1}).steps == 2


def test_aliases_parse_to_the_same_field_and_say_so():
    p = _parser(names=("steps", "rate"), aliases={"steps": ("--iters",)}, required=("rate",))
    for argv in (["--steps", "4", "--rate", "1"], ["--iters", "4", "--rate", "1"]):
        args = p.parse_args(argv)
        assert args.steps == 4 and not hasattr(args, "mode")
    text = _help(p)
    assert "--steps STEPS, --iters STEPS optimisation steps (also spelt --iters)" in text
    assert "--rate RATE learning rate" in text and "big 0.1" not in text  # required: no default to show
    with pytest.raises(SystemExit):
        p.parse_args(["--steps", "4"])


def test_custom_metadata_and_mutually_exclusive_groups():
    p = argparse.ArgumentParser()
    add_dataclass_arguments(p.add_mutually_exclusive_group(), Options, names=("steps", "rate"))
    add_dataclass_arguments(p, Options, names=("mode",), custom={"mode": {"choices": None, "help": "any mode"}})
    assert p.parse_args(["--mode", "medium"]).mode == "medium"
    with pytest.raises(SystemExit):
        p.parse_args(["--steps", "1", "--rate", "2"])
    with pytest.raises(FaceflowError, match="no field"):
        add_dataclass_arguments(argparse.ArgumentParser(), Options, names=("nope",))


def test_train_config_flags_use_the_presets():
    presets = {"tiny": {"train": {"iterations": 2000, "batch_size": 8}, "task": {}},
               "paper": {"train": {"iterations": 300_000, "batch_size": 16}, "task": {}}}
    p = argparse.ArgumentParser(formatter_class=HelpFormatter)
    add_common_arguments(p, presets)
    text = _help(p)
    assert "number of optimisation steps (default: from the preset: tiny 2000, paper 300000)" in text
    assert "fractions of the iterations where the LR is multiplied by --lr-gamma (default: 0.5 0.7 0.85)" in text
    args = p.parse_args(["--out", "o", "--data", "a", "b", "--batch-size", "4", "--tensorboard"])
    cfg = config_from_args(args, presets["paper"]["train"])
    assert cfg == TrainConfig(out="o", data=["a", "b"], iterations=300_000, batch_size=4, tensorboard=True)


def test_reenact_train_accepts_the_harness_flags_of_faceflow_train(tmp_path):
    from reenact.commands import train as reenact_train

    p = argparse.ArgumentParser(formatter_class=HelpFormatter)
    reenact_train.add_arguments(p)
    base = [str(tmp_path / "data"), str(tmp_path / "model")]
    new = p.parse_args(base + ["--iterations", "6", "--num-workers", "2", "--device", "cuda:1"])
    old = p.parse_args(base + ["--max-iters", "6", "--workers", "2", "--device", "cuda:1"])
    assert vars(new) == vars(old)
    assert p.parse_args(base + ["--minutes", "2.5"]).max_minutes == p.parse_args(
        base + ["--max-minutes", "2.5"]).max_minutes == 2.5
    with pytest.raises(SystemExit):  # a step count or a time budget, not both
        p.parse_args(base + ["--iterations", "6", "--minutes", "1"])
    cfg = config_from_args(new, reenact_train.PRESETS["tiny"]["train"], out=new.model_dir, data=[new.data_dir])
    assert (cfg.iterations, cfg.num_workers, cfg.device, cfg.batch_size, cfg.max_minutes) == (6, 2, "cuda:1", 1, 0.0)
    assert cfg.lr_milestones == [0.7] and cfg.out == str(tmp_path / "model")
    text = _help(p)
    for flag in ("--iterations ITERATIONS, --max-iters ITERATIONS", "--max-minutes MAX_MINUTES, --minutes",
                 "--num-workers NUM_WORKERS, --workers"):
        assert flag in text
    assert "(default: from the preset: paper 40000, tiny 600)" in text


@dataclass
class Switches:
    dense: bool = field(default=True, metadata={"help": "use the dense points"})
    pairs: tuple[str, ...] = field(default=("a", "b"), metadata={"help": "pair kinds", "nargs": "*",
                                                                  "choices": ("a", "b")})


def test_on_by_default_switch_and_tuple_fields():
    p = argparse.ArgumentParser(prog="demo", formatter_class=HelpFormatter)
    add_dataclass_arguments(p, Switches)
    text = _help(p)
    assert "--no-dense use the dense points" in text and "--dense " not in text
    assert "pair kinds (default: a b)" in text
    assert dataclass_from_args(Switches, p.parse_args([])) == Switches()
    got = dataclass_from_args(Switches, p.parse_args(["--no-dense", "--pairs", "b"]))
    assert got == Switches(dense=False, pairs=("b",)) and isinstance(got.pairs, tuple)
    assert dataclass_from_args(Switches, p.parse_args(["--pairs"])).pairs == ()  # none at all
    with pytest.raises(SystemExit):
        p.parse_args(["--pairs", "c"])


def test_a_field_may_name_its_own_flag():
    @dataclass
    class Named:
        flows: tuple[str, ...] = field(default=("x",), metadata={"help": "providers", "flag": "--flow"})

    p = argparse.ArgumentParser(prog="demo")
    add_dataclass_arguments(p, Named)
    assert dataclass_from_args(Named, p.parse_args(["--flow", "y", "z"])).flows == ("y", "z")
    with pytest.raises(SystemExit):
        p.parse_args(["--flows", "y"])


def test_misuse_is_named():
    @dataclass
    class Bad:
        dense: bool = field(default=True, metadata={"help": "dense points", "flag": "--sparse"})

    with pytest.raises(FaceflowError, match="--no-dense"):
        add_dataclass_arguments(argparse.ArgumentParser(), Bad)
    with pytest.raises(FaceflowError, match="no field stepz"):
        dataclass_from_args(Options, argparse.Namespace(), stepz=3)
