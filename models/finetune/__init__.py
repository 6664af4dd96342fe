"""Fine-tuning, evaluation and retraining of the sentiment classifier."""
