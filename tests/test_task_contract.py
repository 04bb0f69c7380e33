"""The task contract, checked for every registered task: built-ins and installed plugins alike.

A task declares consistent class attributes; its phantom loads at the smoke cube into
non-empty splits of well-formed cases whose groups never cross splits; its sampler draws
batches its target model and loss accept, from ``rng`` alone; its predictions are shaped
like its targets; its evaluation scores perfect predictions at the best value of every
declared metric and constant ones finitely; its threshold baseline, if it has one, scores
the test split on the declared metrics.
"""

from __future__ import annotations

import math
import weakref

import numpy as np
import pytest
import torch
from helpers import unet

from benchmark.api.profiles import PROFILES
from benchmark.api.registry import TASKS
from benchmark.api.task import Task, TaskData
from benchmark.data.datasets import phantom_source
from benchmark.engine.baselines import threshold_baseline
from benchmark.engine.finetune import predict
from benchmark.errors import UserError

SMOKE = PROFILES["smoke"]
BATCH = 3
NAMES = TASKS.names()
SPLITS = ("train", "val", "test")


@pytest.fixture(scope="module")
def loaded() -> dict[str, tuple[Task, TaskData, tuple[int, int, int]]]:
    """Each task, its phantom loaded at the smoke cube, and that cube (each loaded on first use)."""
    return {}


def task_data(name: str, loaded: dict) -> tuple[Task, TaskData, tuple[int, int, int]]:
    if name not in loaded:
        task = TASKS.create(name)
        cube = task.cube_shape(SMOKE.cube)
        loaded[name] = (task, task.load(phantom_source(task.write_phantom).root, cube), cube)
    return loaded[name]


def perfect(task: Task, cases) -> list[torch.Tensor]:
    """Logits that put every case on the right side of 0.5 by far."""
    return [(2 * task.target(case) - 1) * 20 for case in cases]


@pytest.mark.parametrize("name", NAMES)
def test_class_attributes_are_present_and_consistent(name):
    cls = TASKS.get(name)
    assert cls.name == name and cls.description and "\n" not in cls.description
    assert cls.kind in ("classification", "segmentation") and SMOKE.schedule(cls.kind)
    assert isinstance(cls.metrics, tuple) and cls.metrics and all(isinstance(m, str) for m in cls.metrics)
    assert len(set(cls.metrics)) == len(cls.metrics) and cls.primary_metric in cls.metrics
    assert isinstance(cls.in_channels, int) and cls.in_channels >= 1
    assert isinstance(cls.stratify_subsets, bool) and callable(cls.write_phantom)
    cube = cls().cube_shape(SMOKE.cube)
    assert len(cube) == 3 and all(side % 8 == 0 for side in cube)


@pytest.mark.parametrize("name", NAMES)
def test_the_phantom_loads_into_well_formed_disjoint_splits(name, loaded):
    task, data, cube = task_data(name, loaded)
    groups = []
    for split in SPLITS:
        cases = data.split(split)
        assert cases, f"empty {split} split"
        for case in cases:
            image = case.image
            assert image.dtype == np.float32 and image.ndim == 4 and image.shape[0] == task.in_channels
            assert all(side >= want for side, want in zip(image.shape[1:], cube, strict=True))
            assert 0.0 <= image.min() and image.max() <= 1.0
            if task.kind == "classification":
                assert int(case.target) in (0, 1) and image.shape[1:] == cube
            else:
                assert case.target.dtype == np.uint8 and case.target.shape == image.shape[1:]
                assert set(np.unique(case.target)) <= {0, 1}
            target = task.target(case)
            assert target.dtype == torch.float32 and set(target.unique().tolist()) <= {0.0, 1.0}
        assert len({case.case_id for case in cases}) == len(cases)
        groups.append({case.group for case in cases})
    assert not (groups[0] & groups[1] or groups[0] & groups[2] or groups[1] & groups[2])


@pytest.mark.parametrize("name", NAMES)
def test_a_batch_fits_the_model_and_the_loss_and_depends_only_on_the_rng(name, loaded):
    task, data, cube = task_data(name, loaded)
    images, targets = task.sample_batch(data.train, cube, BATCH, np.random.default_rng(5))
    again = task.sample_batch(data.train, cube, BATCH, np.random.default_rng(5))
    assert torch.equal(images, again[0]) and torch.equal(targets, again[1])
    assert images.shape == (BATCH, task.in_channels, *cube) and images.dtype == torch.float32
    assert targets.dtype == torch.float32 and targets.shape[0] == BATCH
    torch.manual_seed(0)
    model = task.build_model(unet(), SMOKE.width)
    logits = model(images)
    assert logits.shape == targets.shape
    loss = task.loss(logits, targets)
    assert loss.ndim == 0 and torch.isfinite(loss)
    loss.backward()


@pytest.mark.parametrize("name", NAMES)
def test_predictions_are_shaped_like_the_targets(name, loaded):
    task, data, cube = task_data(name, loaded)
    torch.manual_seed(0)
    cases = data.val[:2]
    logits = list(predict(task.build_model(unet(), SMOKE.width), task, cases, cube, SMOKE, torch.device("cpu"),
                          "validation"))
    assert len(logits) == len(cases)
    for case, x in zip(cases, logits, strict=True):
        assert x.shape == task.target(case).shape and x.device.type == "cpu"
        assert math.isfinite(task.case_loss(case, x))


@pytest.mark.parametrize("name", NAMES)
def test_perfect_predictions_score_best_and_constant_ones_finitely(name, loaded):
    task, data, _ = task_data(name, loaded)
    cases = data.test
    scores, frame = task.evaluate(cases, iter(perfect(task, cases)))  # read once, as a stream
    assert set(scores) == set(task.metrics)
    assert all(value == pytest.approx(1.0) for value in scores.values()), scores
    assert list(frame["case_id"]) == [case.case_id for case in cases]
    assert list(frame["group"]) == [case.group for case in cases]
    for constant in (-3.0, 0.0, 3.0):
        scores, _ = task.evaluate(cases, [torch.full_like(task.target(case), constant) for case in cases])
        assert set(scores) == set(task.metrics) and all(math.isfinite(v) for v in scores.values()), scores
    assert all(task.case_loss(case, x) < 0.01 for case, x in zip(cases, perfect(task, cases)))


@pytest.mark.parametrize("name", NAMES)
def test_the_threshold_baseline_scores_the_declared_metrics(name, loaded):
    task, data, _ = task_data(name, loaded)
    try:
        result = threshold_baseline(task, data)
    except UserError as error:
        assert "declares no threshold baseline" in str(error)
        return
    assert result["rule"] and "\n" not in result["rule"]
    assert set(result["metrics"]) == set(task.metrics)
    assert all(0.0 <= value <= 1.0 for value in result["metrics"].values()), result


def both_classes(cases: list, per_class: int) -> list:
    """The first ``per_class`` cases of each label (an AUC needs both; a split's first few may share one)."""
    return [case for label in sorted({case.target for case in cases})
            for case in [c for c in cases if c.target == label][:per_class]]


@pytest.mark.parametrize("name", NAMES)
def test_evaluation_holds_one_prediction_at_a_time(name, loaded):
    """``evaluate`` reads the logits as a stream and keeps none of them: when the next case's logits
    are made, at most the previous case's are still alive (a whole CT volume each, for segmentation).
    What the metrics keep of each case is measured by ``benchmark speed --scale``."""
    task, data, _ = task_data(name, loaded)
    cases = both_classes(data.test, 2) if task.kind == "classification" else data.test[:4]
    made: list[weakref.ref] = []

    def stream():
        for case in cases:
            assert sum(ref() is not None for ref in made) <= 1, "evaluate keeps earlier predictions"
            x = perfect(task, [case])[0]
            made.append(weakref.ref(x))
            yield x
            del x

    scores, frame = task.evaluate(cases, stream())
    assert len(made) == len(cases) and len(frame) == len(cases)
    assert all(value == pytest.approx(1.0) for value in scores.values()), scores


@pytest.mark.parametrize("name", NAMES)
def test_a_task_predicting_another_number_of_cases_is_refused(name, loaded, monkeypatch):
    task, data, cube = task_data(name, loaded)
    cases = data.val[:2]
    own = type(task).predict
    monkeypatch.setattr(type(task), "predict", lambda self, *args: list(own(self, *args))[:-1])
    with pytest.raises(RuntimeError, match="predicted 1 cases of the 2"):
        list(predict(task.build_model(unet(), SMOKE.width), task, cases, cube, SMOKE, torch.device("cpu"), "test"))
