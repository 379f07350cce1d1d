"""Stage 3 of Embedding-Distillation: train the student SentenceTransformer on the teacher's soft labels.

Reads the rows of score.py (refusing an unfinished file) and trains with
sentence-transformers' SentenceTransformerTrainer: DistillKLDivLoss by default (MarginMSE or pointwise MSE on
similarities on request), optionally wrapped in MatryoshkaLoss. Every SentenceTransformerTrainingArguments flag
passes through (--bf16, --per_device_train_batch_size, --gradient_accumulation_steps, --learning_rate, --save_steps,
--eval_strategy, --resume_from_checkpoint last, ...). Multi-GPU: `torchrun --nproc_per_node 8 train.py ...` (data
parallel; on CPUs add --use_cpu true).

    python train.py --student_model BAAI/bge-m3 --training_rows output/embedding/training_rows.jsonl \
        --output_dir output/embedding/model --num_train_epochs 1 --per_device_train_batch_size 16 --bf16
"""

import logging
from dataclasses import dataclass, field

import torch
from sentence_transformers import SentenceTransformerTrainer, SentenceTransformerTrainingArguments

from ragdistill.core.arguments import StudentTrainingArguments
from ragdistill.core.cli import parse_args, run_main, split_paths
from ragdistill.core.jsonl import write_json
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
from ragdistill.embedding.losses import DEFAULT_TEMPERATURE, LABEL_NEGATIVES, LOSSES, build_loss
from ragdistill.embedding.training import (
    DEFAULT_LABEL_WEIGHT,
    adopt_teacher_prompts,
    card_facts,
    column_prompts,
    default_batch_size,
    default_label_weight,
    load_student,
    load_training_rows,
    parse_dims,
    record_matryoshka_dims,
    reranking_evaluator,
)

logger = logging.getLogger(__name__)


# Where they differ from Reranker-Distillation's: 1 epoch at 1e-4, measured with a 22M-parameter student whose
# similarity needs no new head (module README, Results: all of WikiQA train, MAP 0.7149 -> 0.8049, teacher 0.7701);
# more epochs were not measured. Large students want a lower rate (e.g. 2e-5). Rows per step by the loss
# (None: training.default_batch_size, 16 with the label term, 4 for the teacher alone).
DEFAULTS = {**TRAINER_DEFAULTS, "student_model": "BAAI/bge-m3", "training_rows": "output/embedding/training_rows.jsonl",
            "output_dir": "output/embedding/model", "num_train_epochs": 1, "learning_rate": 1e-4,
            "per_device_train_batch_size": None}


@dataclass
class DistillationArguments:
    """The embedder's own settings, beside the student and its rows (core.arguments.StudentTrainingArguments)."""

    loss: str = field(default="kl", metadata={
        "help": "kl: DistillKLDivLoss (softmax over each row's candidates). margin_mse: MarginMSELoss. "
                "mse: pointwise MSE between student and teacher similarities.", "choices": list(LOSSES)})
    temperature: float = field(default=DEFAULT_TEMPERATURE, metadata={
        "help": "kl: softmax temperature for teacher and student scores. Cosines span a narrow range, so at 1.0 "
                "the teacher's distribution is nearly uniform; 0.05 keeps its ranking."})
    student_temperature: float | None = field(default=None, metadata={
        "help": "kl: the student's temperature, if different from --temperature."})
    teacher_temperature: float | None = field(default=None, metadata={
        "help": "kl: the teacher's temperature, if different from --temperature."})
    label_weight: float | None = field(default=None, metadata={
        "help": "kl: weight of the data's own labels beside the teacher: the row's positive against its negatives "
                "and the batch's other candidates (MultipleNegativesRankingLoss at the student temperature). "
                f"0: the teacher only. Default: {DEFAULT_LABEL_WEIGHT} with --loss kl, 0 with the others."})
    label_negatives: str = field(default="batch", metadata={
        "help": "kl with labels: the positive against the batch's other candidates too (batch; "
                "MultipleNegativesRankingLoss) or against its row's own negatives only (row: forgets less out of "
                "domain when the training domain is unlike the test sets; docs/quality/label-free.md).",
        "choices": list(LABEL_NEGATIVES)})
    self_distillation_weight: float = field(default=0.0, metadata={
        "help": "kl: weight of the starting student as a second teacher on the pairs the teacher does not judge "
                "(each text's cosines with the batch's other texts; KL at the student temperature): holds what the "
                "student knew outside the training pairs. Keeps a frozen copy of the student. 0: off."})
    matryoshka_dims: str = field(default="", metadata={
        "help": "Comma-separated embedding sizes (e.g. 1024,512,256): wrap the loss in MatryoshkaLoss so truncated "
                "embeddings work too. Empty: off."})
    max_rows: int = field(default=0, metadata={"help": "Train on the first N rows only (smoke runs); 0 = all."})


def main(argv: list[str] | None = None):
    # 1. arguments: ours, LoRA, and every SentenceTransformerTrainingArguments flag
    student, args, lora, training_args = parse_args(StudentTrainingArguments, DistillationArguments, LoraArguments,
                                                    SentenceTransformerTrainingArguments, args=argv, defaults=DEFAULTS)
    check_distributed(training_args)
    resume = resolve_resume_checkpoint(training_args.resume_from_checkpoint, training_args.output_dir)

    # 2. data: the teacher-labelled rows (an unfinished stage-1 output is refused)
    train_dataset, meta = load_training_rows(student.training_rows, args.max_rows)
    logger.info(f"{len(train_dataset)} {meta['format']} rows from {student.training_rows} (teacher {meta['teacher']})")

    # 3. student, with its query/document prompts on the matching columns: an instruction-following student takes
    # the teacher's, exactly as stage 1 embedded with them; LoRA adapters (if asked) train instead of its weights
    # float32: the Trainer's master weights (--bf16 is autocast); a bf16 checkpoint (Qwen3) would otherwise
    # train in bf16, where small updates round away
    model = load_student(student.student_model, student.max_seq_length, device=str(training_args.device),
                         dtype=torch.float32)
    if adopt_teacher_prompts(model, meta):
        logger.info(f"queries carry the teacher's prompt {meta['query_prompt']!r}, documents "
                    f"{repr(meta['document_prompt']) if meta['document_prompt'] else 'none'}")
    if training_args.prompts is None:
        training_args.prompts = column_prompts(model, train_dataset.column_names)
    describe_distillation(model, student.student_model, meta["teacher"], split_paths(student.training_rows))
    add_lora(model, lora)

    # 4. loss on cosine similarities, matching the teacher's labels
    dims = parse_dims(args.matryoshka_dims)
    label_weight = default_label_weight(args.loss, args.label_weight, split_paths(student.training_rows))
    start_model = None
    if args.self_distillation_weight:  # frozen, as it was before training
        start_model = load_student(student.student_model, student.max_seq_length, device=str(training_args.device),
                                   dtype=torch.float32).requires_grad_(False)
    loss = build_loss(model, args.loss, args.temperature, args.student_temperature, args.teacher_temperature, dims,
                      label_weight, args.label_negatives, start_model, args.self_distillation_weight)
    if training_args.per_device_train_batch_size is None:
        training_args.per_device_train_batch_size = default_batch_size(label_weight)
        logger.info(f"{training_args.per_device_train_batch_size} rows a step per device, "
                    f"{'for the label term' if label_weight else 'for the teacher alone'} "
                    "(--per_device_train_batch_size sets one)")
    record_matryoshka_dims(model, dims)  # vLLM serves truncated embeddings only of models whose config lists them

    # 5. optional evaluator during training
    evaluator = reranking_evaluator(student.eval_file, student.eval_max_queries,
                                    batch_size=training_args.per_device_eval_batch_size)

    # 6. train (resuming from a checkpoint if asked)
    trainer = SentenceTransformerTrainer(model=model, args=training_args, train_dataset=train_dataset, loss=loss,
                                         evaluator=evaluator)
    result = trainer.train(resume_from_checkpoint=resume)

    # 7. save: model (LoRA adapters merged into it) + model card, loss curve, log history, summary
    merge_lora(model)
    trainer.save_model(training_args.output_dir)
    if trainer.is_world_process_zero():
        facts = card_facts(student.student_model, meta, student.training_rows, len(train_dataset), args.loss,
                           training_args.prompts, lora.describe() if lora.enabled else None)
        paths = save_training_record(training_args.output_dir, trainer.state.log_history, facts,
                                     title=f"Distillation loss ({args.loss})")
        write_json(f"{training_args.output_dir}/training_summary.json", {
            "student": student.student_model, "teacher": meta["teacher"], "train_file": student.training_rows,
            "rows": len(train_dataset), "format": meta["format"], "loss": loss.get_config_dict() | {"name": args.loss},
            "prompts": training_args.prompts, "lora": lora.describe() if lora.enabled else None,
            "resumed_from": resume, "global_step": trainer.state.global_step, "train_metrics": result.metrics, **paths,
        })
        logger.info(f"saved the student to {training_args.output_dir} (loss curve: {paths.get('loss_curve')})")


if __name__ == "__main__":
    run_main(main)
