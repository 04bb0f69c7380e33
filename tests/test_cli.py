"""The command line: every command has --help, and --help does not load torch; method settings
(--method-arg) and profile fields (--profile-arg), ``show`` and ``list --verbose``."""

import json
import subprocess
import sys
from dataclasses import replace

import pytest

from benchmark.api.profiles import PROFILES
from benchmark.api.registry import METHODS
from benchmark.api.settings import format_value
from benchmark.cli import build_parser, main
from benchmark.cli.options import method_settings, switches
from benchmark.engine.harness import Plan, RunSpec, plan_run
from benchmark.engine.sweep import Grid
from benchmark.errors import UserError

COMMANDS = sorted(build_parser()._subparsers._group_actions[0].choices)


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help(command, capsys):
    with pytest.raises(SystemExit) as exit_:
        main([command, "--help"])
    assert exit_.value.code == 0
    assert f"usage: benchmark {command}" in capsys.readouterr().out


def test_help_does_not_import_torch():
    probe = ("import sys\nfrom benchmark.cli import main\ntry:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
             "print('torch loaded' if 'torch' in sys.modules else 'torch not loaded')")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert out.strip().endswith("torch not loaded")


# ------------------------------------------------------------------ settings and profile fields


def test_a_run_records_its_method_setting_and_profile_fields_under_its_own_ids(tmp_path, capsys):
    argv = ["run", "--method", "genesis", "--task", "ncs", "--profile", "smoke", "--results", str(tmp_path),
            "--no-progress", "--method-arg", "flip_prob=0", "--profile-arg", "pretrain_epochs=1",
            "--profile-arg", "segmentation.epochs=1"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    (path,) = (tmp_path / "runs").glob("ncs-genesis-smoke-*/result.json")
    record = json.loads(path.read_text())
    assert record["method_settings"]["flip_prob"] == 0.0 and record["method_settings"]["paint_prob"] == 0.9
    profile = record["identity"]["profile"]
    assert profile["pretrain_epochs"] == 1 and profile["segmentation"]["epochs"] == 1
    assert record["pretraining"]["epochs"] == 1
    assert "method   genesis   settings: flip_prob=0.0   pretraining:" in out
    plain = plan_run(RunSpec("genesis", "ncs", profile="smoke"))
    assert record["run_id"] != plain.run_id and record["pretraining"]["checkpoint_id"] != plain.checkpoint_id


def planned(*options: str) -> Plan:
    """The plan of a smoke genesis run on ncs with these command-line options (nothing is trained)."""
    args = build_parser().parse_args(["run", "--method", "genesis", "--task", "ncs", "--profile", "smoke", *options])
    return plan_run(RunSpec(args.method, args.task, profile=args.profile, switches=tuple(switches(args).items()),
                            method_settings=method_settings(args)))


def test_settings_and_profile_fields_change_the_ids_that_depend_on_them():
    plain = planned()
    setting = planned("--method-arg", "loss=mae")
    pretraining = planned("--profile-arg", "pretrain_lr=0.01")
    finetuning = planned("--profile-arg", "segmentation.batch=2")
    workers = planned("--profile-arg", "loader_workers=2")
    assert setting.method.settings()["loss"] == "mae" and setting.profile == plain.profile
    assert pretraining.profile.pretrain_lr == 0.01 and finetuning.profile.segmentation.batch == 2
    for changed in (setting, pretraining, finetuning):
        assert changed.run_id != plain.run_id
    assert setting.checkpoint_id != plain.checkpoint_id and pretraining.checkpoint_id != plain.checkpoint_id
    assert finetuning.checkpoint_id == plain.checkpoint_id  # fine-tuning alone does not pretrain again
    assert workers.profile.loader_workers == 2 and workers.run_id == plain.run_id  # changes no number


def test_one_value_written_as_int_float_or_text_is_one_run():
    """A preset's JSON, the Python API and the command line write numbers differently: one id for one run."""
    def plan(fraction: object, lr: object, flip: object, divisors: object, batch: object) -> Plan:
        segmentation = replace(PROFILES["smoke"].segmentation, batch=batch, lr=1)
        return plan_run(RunSpec("genesis", "ncs", profile="smoke", fraction=fraction,
                                switches=(("pretrain_lr", lr), ("segmentation", segmentation)),
                                method_settings=(("flip_prob", flip), ("inner_side_divisors", divisors))))

    plans = [plan(1, 1, 1, [6, 3], 2), plan(1.0, 1.0, 1.0, (6.0, 3.0), 2.0), plan(1.0, 1.0, "1", "6,3", 2)]
    assert len({p.run_id for p in plans}) == 1 and len({p.checkpoint_id for p in plans}) == 1
    assert plans[0].spec.fraction == 1.0 and isinstance(plans[0].profile.segmentation.lr, float)
    with pytest.raises(UserError, match="max_flips=2.5: expected an integer, got 2.5"):
        plan_run(RunSpec("genesis", "ncs", profile="smoke", method_settings=(("max_flips", 2.5),)))


RUN = ["run", "--method", "genesis", "--task", "ncs", "--profile", "smoke"]


@pytest.mark.parametrize("argv, message", [
    (RUN + ["--method-arg", "flip_prb=0"], "error: method 'genesis': unknown setting 'flip_prb'; did you mean "
                                           "'flip_prob'? known: flip_prob, max_flips,"),
    (RUN + ["--method-arg", "flip_prob=2"], "error: method 'genesis', setting flip_prob=2: flip_prob must be in "
                                            "[0, 1], got 2.0"),
    (RUN + ["--method-arg", "flip_prob=often"], "error: method 'genesis', setting flip_prob=often: expected a "
                                                "number, got 'often'"),
    (RUN + ["--method-arg", "flip_prob"], "error: --method-arg flip_prob: expected KEY=VALUE"),
    (RUN + ["--method-arg", "loss=mae", "--method-arg", "loss=mse"], "error: --method-arg loss: given twice"),
    (RUN + ["--profile-arg", "pretrain_epoch=1"], "error: profile 'smoke': unknown field 'pretrain_epoch'; did you "
                                                  "mean 'pretrain_epochs'?"),
    (RUN + ["--profile-arg", "pretrain_epochs=two"], "error: profile 'smoke', field pretrain_epochs=two: expected "
                                                     "an integer, got 'two'"),
    (RUN + ["--profile-arg", "pretrain_epochs=0"], "error: pretrain_epochs 0: must be >= 1"),
    (RUN + ["--profile-arg", "segmentation.lr_decay=linear"], "error: segmentation.lr_decay 'linear': expected "
                                                               "one of none, cosine"),
    (RUN + ["--profile-arg", "loader_workers=2", "--workers", "1"], "error: --profile-arg loader_workers: given by "
                                                                    "--workers too"),
    (["pretrain", "--method", "denoising", "--method-arg", "max_sigma=-1"], "error: method 'denoising', setting "
                                                                           "max_sigma=-1: max_sigma must be >= 0"),
    (["sweep", "--methods", "genesis,scratch-he", "--tasks", "ncs", "--method-arg", "flip_prb=0"],
     "error: the sweep's methods (genesis, scratch-he): unknown setting 'flip_prb'; did you mean 'flip_prob'?"),
    (["show", "genesys"], "error: unknown method 'genesys'; did you mean 'genesis'?"),
])
def test_bad_settings_and_fields_are_one_line_errors(argv, message, tmp_path, capsys):
    results = ["--results", str(tmp_path)] if argv[0] != "show" else []
    assert main(argv + results) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(message) and "\n" not in err
    assert not (tmp_path / "runs").exists() and not (tmp_path / "checkpoints").exists()


def test_a_sweep_gives_each_method_the_settings_it_has():
    grid = Grid(methods=["genesis", "denoising", "scratch-he"], tasks=["ncs"], fractions=[1.0], seeds=[0],
                method_settings=(("loss", "mae"), ("flip_prob", "0")))
    settings = {spec.method: dict(spec.method_settings) for spec in grid.specs()}
    assert settings == {"genesis": {"loss": "mae", "flip_prob": "0"}, "denoising": {"loss": "mae"}, "scratch-he": {}}


# ------------------------------------------------------------------ show and list --verbose


def test_show_prints_what_a_method_is_and_every_setting_with_its_default(capsys):
    assert main(["show", "genesis"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[:3] == ["genesis  (built-in)", f"  {METHODS.description('genesis')}",
                         "  transfers: encoder+decoder; backbones: *"]
    assert lines[4].startswith("Restore the original cube from a transformed one.")  # its docstring
    header = lines.index("settings (change one with --method-arg KEY=VALUE):")
    shown = dict(line.split() for line in lines[header + 1:])
    assert shown == {key: format_value(value) for key, value in METHODS.defaults("genesis").items()}
    assert shown["inner_side_divisors"] == "6,3" and shown["loss"] == "mse"


def test_show_marks_the_values_a_preset_sets(capsys):
    assert main(["show", "genesis-nl"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "genesis-nl  (built-in; a preset of genesis)"
    rows = {line.split()[0]: line.split()[1:] for line in lines if line.startswith("  ") and len(line.split()) > 1}
    assert rows["nonlinear_prob"] == ["1.0", "*", "(0.9)"] and rows["local_shuffle_prob"] == ["0.0", "*", "(0.5)"]
    assert rows["flip_prob"] == ["0.4"] and rows["loss"] == ["mse"]


def test_a_plugins_description_reaches_the_terminal_escaped(capsys, monkeypatch):
    """A description is a plugin's string: a terminal control sequence or a line separator in it is
    shown escaped by list and show, never sent to the terminal as it is."""
    METHODS.load()  # the built-ins first, into the registry's own tables
    monkeypatch.setattr(METHODS, "_presets", dict(METHODS._presets))
    METHODS.register_preset("evil-preset", METHODS.get("scratch-he"), "evil \x1b]0;owned\x07 text\u2028more")
    for argv in (["list", "--verbose"], ["show", "evil-preset"]):
        assert main(argv) == 0
        out = capsys.readouterr().out
        assert "\x1b" not in out and "\u2028" not in out and "\x07" not in out, argv
        assert "evil \\x1b]0;owned\\x07 text\\u2028more" in out, argv


def test_list_verbose_adds_every_methods_settings(capsys):
    assert main(["list"]) == 0
    assert "settings" not in capsys.readouterr().out
    assert main(["list", "--verbose"]) == 0
    out = capsys.readouterr().out
    assert "settings: max_sigma=0.1 loss=mse" in out and "settings: none" in out  # denoising; scratch
    assert "nonlinear_prob=1.0*" in out and "nonlinear_prob=0.9 " in out  # genesis-nl's preset value; genesis'
