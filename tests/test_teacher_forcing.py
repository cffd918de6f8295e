"""Each teacher-forcing schedule follows its formula."""

import math

import pytest
from hydra.utils import instantiate
from omegaconf import OmegaConf

from seq2seq.errors import ConfigError
from seq2seq.teacher_forcing import (
    ConstantSchedule,
    ExponentialSchedule,
    InverseSigmoidSchedule,
    LinearSchedule,
)


def test_constant():
    schedule = ConstantSchedule(0.7)
    assert [schedule(t, 0) for t in (0, 10, 10_000)] == [0.7, 0.7, 0.7]


def test_linear_goes_from_start_to_end_then_stays():
    schedule = LinearSchedule(start=1.0, end=0.2, duration=100)
    assert schedule(0, 0) == 1.0
    assert schedule(50, 0) == pytest.approx(0.6)
    assert schedule(100, 0) == pytest.approx(0.2)
    assert schedule(1000, 0) == pytest.approx(0.2)


def test_exponential_decays_to_its_floor():
    schedule = ExponentialSchedule(start=1.0, end=0.3, decay=0.9)
    assert schedule(0, 0) == 1.0
    assert schedule(5, 0) == pytest.approx(0.9**5)
    assert schedule(100, 0) == pytest.approx(0.3)


def test_inverse_sigmoid_follows_bengio_et_al():
    k = 10.0
    schedule = InverseSigmoidSchedule(start=1.0, end=0.0, decay=k)
    for t in (0, 5, 20, 60):
        assert schedule(t, 0) == pytest.approx(k / (k + math.exp(t / k)))
    assert schedule(10**9, 0) == pytest.approx(0.0)  # no overflow


def test_epoch_unit_reads_the_epoch():
    schedule = LinearSchedule(start=1.0, end=0.0, duration=4, unit="epoch")
    assert schedule(step=999, epoch=1) == pytest.approx(0.75)


@pytest.mark.parametrize(
    "make",
    [
        lambda: ConstantSchedule(1.0, unit="batch"),
        lambda: ExponentialSchedule(decay=1.5),
        lambda: InverseSigmoidSchedule(decay=0.5),
        lambda: LinearSchedule(duration=0),
        lambda: ConstantSchedule(0.5, mode="approximate"),
    ],
)
def test_bad_parameters_are_config_errors(make):
    with pytest.raises(ConfigError):
        make()


@pytest.mark.parametrize("name", ["constant", "linear", "exponential", "inverse_sigmoid"])
def test_configs_instantiate(name):
    cfg = OmegaConf.load(f"conf/teacher_forcing/{name}.yaml")
    schedule = instantiate(cfg)
    assert 0.0 <= schedule(0, 0) <= 1.0
    assert schedule(0, 0) >= schedule(100_000, 100)
