"""Training: model versions, fine-tuning jobs and evaluation."""
