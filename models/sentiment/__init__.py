"""The sentiment classifier: config, network/checkpoints and the serving predictor."""
from models.sentiment.config import CONFIG_FILE, ModelConfig
from models.sentiment.network import base_encoder_path, load_classifier
from models.sentiment.predictor import Encoded, Prediction, SentimentModel

__all__ = ["CONFIG_FILE", "Encoded", "ModelConfig", "Prediction", "SentimentModel",
           "base_encoder_path", "load_classifier"]
