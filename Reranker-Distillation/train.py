"""Stage 3: train the student CrossEncoder on the teacher's scores with sentence-transformers' CrossEncoderTrainer.

    python train.py --student_model BAAI/bge-reranker-v2-m3 --training_rows output/reranker/training_rows.jsonl \
        --output_dir output/reranker/model --loss listnet --bf16 --per_device_train_batch_size 16

A yes/no LLM reranker of the teacher's family (--student_model Qwen/Qwen3-Reranker-0.6B) is a student too: it reads
the teacher's prompt token for token (the instruction stage 1 recorded, or --instruction) and scores
logit("yes") - logit("no") in fp32. --lora_r N trains LoRA adapters instead of every weight (peft); they are merged
into the saved model, which then loads like any reranker (CrossEncoder(path), or vLLM as the teacher is served).

Losses: listnet (default) and lambda (listwise rows), margin_mse (ntuple or triplet rows), mse (pointwise on the
teacher scores; ntuple or listwise rows). Every CrossEncoderTrainingArguments / TrainingArguments option passes
through (--bf16, --gradient_checkpointing, --gradient_accumulation_steps, --learning_rate, --warmup_steps,
--save_steps, --eval_strategy, ...). Multi-GPU: `torchrun --nproc_per_node N train.py ...` (data parallel; the
per-device batch size is per GPU). `--resume_from_checkpoint output/reranker/model/checkpoint-500` (or `last`)
continues a stopped run from its last checkpoint.

The final model is saved in sentence-transformers format to --output_dir (checkpoints go to checkpoint-N inside
it), with a model card naming teacher, data and loss, log_history.json and loss_curve.png.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field

import torch
from sentence_transformers.cross_encoder import CrossEncoderTrainer, CrossEncoderTrainingArguments
from transformers import set_seed

from ragdistill.core.arguments import StudentTrainingArguments
from ragdistill.core.cli import parse_args, run_main, split_paths
from ragdistill.core.errors import InputError
from ragdistill.core.training import (
    TRAINER_DEFAULTS,
    LoraArguments,
    add_lora,
    check_distributed,
    describe_distillation,
    merge_lora,
    resolve_resume_checkpoint,
    save_training_record,
)
from ragdistill.reranker.losses import LOSSES, build_loss
from ragdistill.reranker.training import (
    DEFAULT_LABEL_WEIGHT,
    LAMBDA_LABELS,
    card_facts,
    default_label_weight,
    default_learning_rate,
    is_yes_no_llm,
    load_student,
    load_training_rows,
    reranking_evaluator,
    rows_provenance,
    student_has_trained_head,
    student_instruction,
    teacher_instruction,
)

logger = logging.getLogger(__name__)


# Where they differ from Embedding-Distillation's, measured (module README, Results): 3 epochs, since a student with a
# new head keeps learning past one (ListNet at 1e-4 on all of WikiQA train, teacher only: MAP 0.6915 after 1 epoch,
# 0.7228 after 3); the learning rate by the student's head (None: default_learning_rate picks 1e-4 for a new head,
# 1e-5 for a trained reranker, whose head a high rate would throw away).
DEFAULTS = {**TRAINER_DEFAULTS, "student_model": "BAAI/bge-reranker-v2-m3",
            "training_rows": "output/reranker/training_rows.jsonl", "output_dir": "output/reranker/model",
            "num_train_epochs": 3, "learning_rate": None}


@dataclass
class DistillationArguments:
    """The reranker's own settings, beside the student and its rows (core.arguments.StudentTrainingArguments)."""

    loss: str = field(default="listnet", metadata={
        "help": f"One of {', '.join(LOSSES)}. listnet (default): softmax over each query's passages, teacher vs student."})
    teacher_model: str = field(default=None, metadata={
        "help": "Teacher name for the model card; default: what stage 2 recorded beside the rows."})
    instruction: str = field(default=None, metadata={
        "help": "yes/no LLM students: the instruction in their prompt. Default: the teacher's, as stage 1 recorded "
                "it beside its scores (else the student's own saved one, else Qwen3-Reranker's default)."})
    lambda_labels: str = field(default="sigmoid", metadata={
        "help": f"lambda loss: teacher scores as graded relevance, one of {', '.join(LAMBDA_LABELS)}. sigmoid = the "
                "teacher's probability of relevance (log-odds teachers); minmax = per query to [0, 1] (bi-encoder "
                "teachers); raw."})
    mini_batch_size: int = field(default=0, metadata={
        "help": "listnet/lambda: pairs per forward pass inside a batch (0 = the batch); lowers memory."})
    label_weight: float | None = field(default=None, metadata={
        "help": "listnet: weight of the data's own labels beside the teacher: the cross-entropy of the student's "
                "softmax over a query's documents against its positives (the rows' relevance, from the MTEB files "
                f"stage 1 scored). 0: the teacher only. Default: {DEFAULT_LABEL_WEIGHT} with --loss listnet on rows "
                "that carry the labels, else 0."})

    def __post_init__(self):
        if (self.label_weight or 0) < 0 or self.mini_batch_size < 0:
            raise InputError(None, "--label_weight and --mini_batch_size must be >= 0")


def main(argv: list[str] | None = None) -> None:
    # 1. arguments: ours, LoRA, and every CrossEncoderTrainingArguments flag
    student, args, lora, training_args = parse_args(StudentTrainingArguments, DistillationArguments, LoraArguments,
                                                    CrossEncoderTrainingArguments, args=argv, defaults=DEFAULTS)
    train_files = split_paths(student.training_rows)
    check_distributed(training_args)  # torchrun on CPUs needs --use_cpu true, or N copies would train apart
    resume = resolve_resume_checkpoint(training_args.resume_from_checkpoint, training_args.output_dir)

    # 2. data: the stage-2 rows, laid out for the loss and its label term (read once, on the main process first
    # under torchrun)
    provenance = rows_provenance(train_files)
    label_weight = default_label_weight(args.loss, args.label_weight, train_files)
    with training_args.main_process_first(desc="loading training rows"):
        train_dataset, row_format = load_training_rows(train_files, args.loss, args.lambda_labels, label_weight)
    logger.info(f"{len(train_dataset)} training rows ({row_format}) for --loss {args.loss}"
                + (f", + {label_weight:g} x the data's labels" if label_weight else ""))

    # 3. student (seeded first: a freshly added head starts the same on every rank and in evaluation.py); a yes/no
    # LLM reads the teacher's instruction, and LoRA adapters (if asked) train instead of its weights
    # float32: the Trainer's master weights (--bf16 is autocast); a bf16 checkpoint (Qwen3) would otherwise
    # train in bf16, where small updates round away
    set_seed(training_args.seed)
    if training_args.learning_rate is None:
        training_args.learning_rate = default_learning_rate(student.student_model)
        logger.info(f"learning rate {training_args.learning_rate:g}, by the student's head (--learning_rate sets one)")
    instruction = args.instruction or teacher_instruction(provenance, train_files[0])
    model = load_student(student.student_model, student.max_seq_length, torch.float32, str(training_args.device),
                         instruction=instruction)
    if not student_has_trained_head(student.student_model):
        logger.info(f"{student.student_model} has no classification head: training a freshly initialised one")
    if is_yes_no_llm(model):
        teacher_length = provenance["teacher_max_length"]
        logger.info(f"yes/no LLM student: the teacher's prompt with the instruction {student_instruction(model)!r}, "
                    f"cut to --max_seq_length {student.max_seq_length} (the teacher's: {teacher_length or 'unknown'})")
    teacher = args.teacher_model or ", ".join(provenance["teachers"]) or "unknown teacher"
    describe_distillation(model, student.student_model, teacher, train_files, tags=["reranker", f"loss:{args.loss}"])
    add_lora(model, lora)

    # 4. loss on the student's scores, matching the teacher's
    loss = build_loss(model, args.loss, args.mini_batch_size or None, label_weight)

    # 5. optional evaluator during training
    evaluator = reranking_evaluator(student.eval_file, student.eval_max_queries)

    # 6. train (resuming from a checkpoint if asked: a path, or "last" for the newest in --output_dir). Under
    # torchrun (DDP) the losses run the model several times per step (positive, negatives), which DDP's
    # unused-parameter search does not allow; a cross-encoder uses all its parameters anyway.
    if training_args.ddp_find_unused_parameters is None:
        training_args.ddp_find_unused_parameters = False
    trainer = CrossEncoderTrainer(model=model, args=training_args, train_dataset=train_dataset, loss=loss,
                                  evaluator=evaluator)
    trainer.train(resume_from_checkpoint=resume)

    # 7. save the final model (sentence-transformers format; LoRA adapters merged into it) and its training record,
    # beside the checkpoints
    merge_lora(model)
    trainer.save_model(training_args.output_dir)
    if trainer.is_world_process_zero():
        facts = card_facts(student.student_model, teacher, train_files, row_format, args.loss, len(train_dataset),
                           provenance, student_instruction(model), lora.describe() if lora.enabled else None,
                           label_weight)
        saved = save_training_record(training_args.output_dir, trainer.state.log_history, facts,
                                     title="Student training loss")
        logger.info(f"saved the student to {training_args.output_dir} "
                    f"({', '.join(os.path.basename(p) for p in saved.values())})")


if __name__ == "__main__":
    run_main(main)
