"""One trial of a study: a GPT-2-style byte-level language model built from a config (no
download), trained with transformers.Trainer on a local text file through the SDK."""

import sysconfig
from pathlib import Path

import torch
from transformers import GPT2Config, GPT2LMHeadModel, Trainer, TrainingArguments

from scalingstudy_sdk import Trial
from scalingstudy_sdk.integrations.huggingface import ScalingStudyCallback, last_checkpoint

trial = Trial.from_env_or_exit()
options, training = trial.task_options, trial.training
context, held_out = int(options.get("context", 64)), int(options.get("validationSequences", 256))
# The text: options.text, else the Python standard library's own source (offline).
stdlib = sorted(Path(sysconfig.get_paths()["stdlib"]).glob("*.py"))
files = [Path(options["text"])] if "text" in options else stdlib
text = b"".join(f.read_bytes() for f in files)[: 8 << 20]
rows = torch.frombuffer(bytearray(text), dtype=torch.uint8)
rows = rows[: len(rows) // context * context].view(-1, context).long()
train_rows = rows[trial.subset(len(rows), held_out)]  # this trial's nested subset
val_rows = rows[trial.validation(len(rows), held_out)]  # the same for every trial

batch = int(training.get("batchSize", 16))
steps = int(training.get("epochs", 4) * len(train_rows) / batch)
steps = max(int(training.get("minSteps", 1)), min(int(training.get("maxSteps", 10**9)), steps))
config = GPT2Config(vocab_size=256, n_positions=context, n_layer=2, n_head=2,
                    n_embd=trial.model_size, bos_token_id=0, eos_token_id=0)  # fmt: skip
args = TrainingArguments(
    output_dir=trial.checkpoint_dir or "hf-output", max_steps=steps, seed=trial.seed,
    per_device_train_batch_size=batch, learning_rate=trial.learning_rate or 1e-3,
    eval_strategy="steps", eval_steps=int(training.get("evalEvery", 50)), save_strategy="no",
    logging_strategy="no", report_to=[], disable_tqdm=True, lr_scheduler_type="cosine",
    warmup_steps=steps // 20, use_cpu=not torch.cuda.is_available(),
)  # fmt: skip
trainer = Trainer(
    model=GPT2LMHeadModel(config), args=args, callbacks=[ScalingStudyCallback(trial)],
    train_dataset=[{"input_ids": r, "labels": r} for r in train_rows],
    eval_dataset=[{"input_ids": r, "labels": r} for r in val_rows],
)  # fmt: skip
trainer.train(resume_from_checkpoint=last_checkpoint(trial))  # reports the best eval_loss
