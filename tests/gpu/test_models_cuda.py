"""The sentiment model on CUDA: bf16 autocast agrees with CPU fp32; training steps run."""
import numpy as np
import pytest
import torch

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]

TEXTS = ["$AAPL soars on record quarter", "profit warning: shares plunge", "", "x" * 20_000,
         "company files quarterly report", "股票大涨 🚀"]


def test_cuda_predictions_match_cpu():
    from models.sentiment import SentimentModel

    cpu = SentimentModel.untrained_for_tests(device="cpu", seed=0)
    gpu = SentimentModel.untrained_for_tests(device="cuda", seed=0)
    assert gpu.device.type == "cuda"
    p_cpu = cpu.forward(cpu.encode(TEXTS))
    p_gpu = gpu.forward(gpu.encode(TEXTS))
    assert p_gpu.dtype == np.float32
    np.testing.assert_allclose(p_gpu, p_cpu, atol=3e-2)  # bf16 autocast
    batched = gpu.forward(gpu.encode(TEXTS))
    single = np.concatenate([gpu.forward(gpu.encode([t])) for t in TEXTS])
    np.testing.assert_allclose(batched, single, atol=3e-2)


@pytest.mark.parametrize("method", ["full", "lora"])
def test_cuda_training_steps(method, tmp_path):
    from models.finetune.datasets import Example
    from models.finetune.train import TrainConfig, train
    from models.sentiment import SentimentModel
    from models.text import LABELS

    exs = [Example(f"stock {w} item {i}", LABELS[i % 3])
           for i, w in enumerate(["falls", "holds", "rises"] * 14)]
    cfg = TrainConfig(method=method, max_steps=3, batch_size=8, device="cuda", progress=False)
    res = train(cfg, exs[:33], exs[33:], tmp_path / method)
    sm = SentimentModel.from_checkpoint(res.path, device="cuda")
    assert len(sm.predict_batch(TEXTS)) == len(TEXTS)


def test_an_entity_pair_model_merges_and_scores_on_cuda():
    """Stored tensors load on the CPU; the merge puts them on the encoder's device."""
    from models.sentiment import SentimentModel
    from models.sentiment.entity_pair import EntityPairScorer, PairConfig, merge_lora
    from models.sentiment.network import tokenizer_file

    cpu = SentimentModel.untrained_for_tests(device="cpu", seed=0)
    gpu = SentimentModel.untrained_for_tests(device="cuda", seed=0)
    h = cpu.config.hidden_size
    torch.manual_seed(0)
    w = {"encoder.layer.0.attention.self.query.lora_A": torch.randn(4, h) * 0.1,
         "encoder.layer.0.attention.self.query.lora_B": torch.randn(h, 4) * 0.1,
         "encoder.layer.0.output.LayerNorm.bias.delta": torch.randn(h) * 0.1}
    head_w, head_b = torch.randn(2, h), torch.zeros(2)
    pairs = [("Tesla", "JPMorgan sues Tesla over the deal"), ("JPMorgan", "JPMorgan sues Tesla")]
    got = []
    for m in (cpu, gpu):
        enc = merge_lora(m.network.encoder, w, 1.0)
        s = EntityPairScorer(enc, head_w, head_b, PairConfig(rank=4),
                             tokenizer_file(m.config.base_model), m.text_encoder.normalize)
        got.append(s.key_probs(pairs))
    np.testing.assert_allclose(got[0], got[1], atol=1e-3)
