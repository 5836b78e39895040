"""The wire contract between a study's executor (the operator, the local runner) and a
trainer (DESIGN §5): the environment a trial gets, its exit codes, and the names its
result is reported under. Standard library only: a trainer image needs nothing else."""

from __future__ import annotations

ENV_STUDY = "SCALINGSTUDY_STUDY"
ENV_NAMESPACE = "SCALINGSTUDY_NAMESPACE"
ENV_TRIAL = "SCALINGSTUDY_TRIAL"
ENV_DATA_SIZE = "SCALINGSTUDY_DATA_SIZE"
ENV_MODEL_SIZE = "SCALINGSTUDY_MODEL_SIZE"
ENV_SEED = "SCALINGSTUDY_SEED"
ENV_PUSHGATEWAY = "SCALINGSTUDY_PUSHGATEWAY"
ENV_RESULT_FILE = "SCALINGSTUDY_RESULT_FILE"
# Extensions for the built-in trainer: the task and training settings as JSON, inline
# (local runs) or, on a cluster, in files of the study's ConfigMap (so a Job does not
# grow with the spec): the _FILE variables name them.
ENV_TASK = "SCALINGSTUDY_TASK"
ENV_TRAINING = "SCALINGSTUDY_TRAINING"
ENV_TASK_FILE = "SCALINGSTUDY_TASK_FILE"
ENV_TRAINING_FILE = "SCALINGSTUDY_TRAINING_FILE"
#: Keys of the study's ConfigMap (`trial_config`) and so file names under its mount.
TASK_KEY = "task.json"
TRAINING_KEY = "training.json"
ENV_METRIC = "SCALINGSTUDY_METRIC"
ENV_CHECKPOINT_DIR = "SCALINGSTUDY_CHECKPOINT_DIR"
#: The trial's learning rate in a learning-rate sweep (unset otherwise): it replaces
#: training.learningRate.
ENV_LEARNING_RATE = "SCALINGSTUDY_LEARNING_RATE"
#: Port of the trainer's /metrics (progress while training); unset or 0: not served.
ENV_METRICS_PORT = "SCALINGSTUDY_METRICS_PORT"
# A trial of several processes (DESIGN §5, distributed trials): how many pods and
# processes per pod, this pod's rank among the trial's pods (its Job completion index),
# and where rank 0 (pod 0, process 0) listens for the rendezvous.
ENV_NODES = "SCALINGSTUDY_NODES"
ENV_NODE_RANK = "SCALINGSTUDY_NODE_RANK"
ENV_PROCESSES_PER_POD = "SCALINGSTUDY_PROCESSES_PER_POD"
ENV_MASTER_ADDR = "SCALINGSTUDY_MASTER_ADDR"
ENV_MASTER_PORT = "SCALINGSTUDY_MASTER_PORT"
#: The rendezvous port on pod 0 (torchrun's default).
MASTER_PORT = 29500

#: Exit status of a trainer whose configuration cannot work (bad task, missing corpus):
#: retrying cannot help, so the operator fails the trial at once (EX_CONFIG of sysexits.h).
EXIT_CONFIG_ERROR = 78
#: Exit status after SIGTERM with a checkpoint saved: the retry resumes from it.
EXIT_PREEMPTED = 143

#: The metric a built-in trainer reports, and the default of spec.metric.name.
METRIC = "validation_loss"

#: Result key -> the Pushgateway gauge a trainer pushes it as (DESIGN §5 metric names).
TRIAL_GAUGES = {
    "validation_loss": "scalingstudy_trial_validation_loss",
    "train_loss": "scalingstudy_trial_train_loss",
    "parameters": "scalingstudy_trial_parameters",
    "samples_seen": "scalingstudy_trial_samples_seen",
    "steps": "scalingstudy_trial_step",
}
#: Extra result keys of the built-in trainer (a custom trainer may report them too): the
#: schedule a trial ran, which a short step budget may shorten (its budget, warmup steps,
#: peak learning rate and the rate of its last step, also over the peak) ...
SCHEDULE_KEYS = (
    "step_budget",
    "warmup_steps",
    "peak_learning_rate",
    "final_learning_rate",
    "final_learning_rate_ratio",
)
#: ... the largest micro-batch of its last step, present and true when an out-of-memory
#: cut the micro-batch of a model with BatchNorm (its normalisation batch, so its loss is
#: not that of its batch size: a fit should say so) ...
MICRO_BATCH = "micro_batch"
NORMALISATION_BATCH_CHANGED = "normalisation_batch_changed"
#: ... and the first step whose training loss was NaN or infinite, when the trial diverged
#: after a finite evaluation (its result is then the lowest evaluation before).
DIVERGED_AT_STEP = "diverged_at_step"
#: Labels of every trial gauge; namespace, study and trial also form the push group.
TRIAL_LABELS = ("namespace", "study", "trial", "data_size", "model_size", "seed")
PUSH_JOB = "scalingstudy"
#: The push group (job label) of a running trial's latest evaluation: the same gauges and
#: labels as its result, in a group of its own, so that the operator, which reads results
#: only with job="scalingstudy", never takes progress for a result (issue 38).
PROGRESS_PUSH_JOB = "scalingstudy-progress"
#: Progress is pushed at most once per this many seconds (and the last one at the end).
PROGRESS_PUSH_SECONDS = 10.0
#: A running trial's curve so far, one sample per kept evaluation, labelled with its
#: ``step`` (the dashboard's loss-against-step panel): in the progress group and on the
#: built-in trainer's /metrics, outside the ``scalingstudy_trial_`` names the operator reads.
CURVE_GAUGE = "scalingstudy_curve_validation_loss"
#: At most about this many evaluations of one trial are kept on that gauge (thinned by
#: halving, so the steps kept stay the same from one push to the next), and its latest.
CURVE_POINTS = 32
#: Progress key -> result key of its gauge (an evaluation's ``step`` is a result's ``steps``).
PROGRESS_GAUGE_KEYS = {
    "validation_loss": "validation_loss",
    "train_loss": "train_loss",
    "step": "steps",
    "samples_seen": "samples_seen",
}
