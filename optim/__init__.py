"""Optimizers and learning-rate schedules."""
from .adam import Adam, AdamW
from .optimizer import Optimizer
from .schedules import (ConstantLR, CosineLR, ExponentialLR, InvLR, MultiStepLR, Schedule, StepLR, parse_schedule,
                        schedule_from_string)
from .sgd import SGD

__all__ = ["Optimizer", "SGD", "Adam", "AdamW", "Schedule", "ConstantLR", "StepLR", "MultiStepLR",
           "ExponentialLR", "CosineLR", "InvLR",
           "parse_schedule", "schedule_from_string"]
