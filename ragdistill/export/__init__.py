"""The export stage of both pipelines: a trained student as ONNX / OpenVINO variants (variants), each measured and
reported side by side (evaluation). It takes the student's pipeline (ragdistill.core.pipeline.Pipeline)."""
