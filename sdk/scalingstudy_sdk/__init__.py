"""Bring your own training code to a scaling study: read the trial (sizes, seed, settings),
take its nested data subset, report progress and the result, stop cleanly on SIGTERM.

    from scalingstudy_sdk import Trial
    trial = Trial.from_env_or_exit()
    train_ids = trial.subset(len(dataset), validation=1000)  # or subset(len(train_split))
    ...
    trial.report(validation_loss=best, parameters=n_params)

Standard library only; the operator and the built-in trainer use the same code.
"""

from scalingstudy_sdk.order import Order
from scalingstudy_sdk.report import report_result
from scalingstudy_sdk.trial import Preemption, Trial, TrialError

__all__ = ["Order", "Preemption", "Trial", "TrialError", "report_result"]
__version__ = "0.1.0"
