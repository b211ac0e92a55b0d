"""Golden fixture: transformers' sampling logits processors, in generate's order.

Run from the repository root with torch and transformers installed (versions in the fixture):

    python scripts/reference/hf_logits_processors.py

For seeded logits vectors (f32, with ties and negative values) and settings, it applies
RepetitionPenaltyLogitsProcessor, TemperatureLogitsWarper, TopKLogitsWarper and
TopPLogitsWarper as GenerationMixin._get_logits_processor orders them (repetition penalty
first, then temperature, top-k, top-p; min_tokens_to_keep 1) and records the processed
scores (-inf where filtered) and the kept token set. test/generate/sampling.test.ts
replays them through src/generate/sampling.ts processLogits.
"""

import json
import pathlib

import torch
import transformers
from transformers import (
    LogitsProcessorList,
    RepetitionPenaltyLogitsProcessor,
    TemperatureLogitsWarper,
    TopKLogitsWarper,
    TopPLogitsWarper,
)

ROOT = pathlib.Path(__file__).resolve().parents[2]
OUT = ROOT / "test" / "fixtures" / "generate" / "hf-logits-processors.json"

SETTINGS = [
    dict(repetition_penalty=1.3),
    dict(temperature=0.7),
    dict(top_k=5),
    dict(top_p=0.6),
    dict(temperature=1.5, top_k=8, top_p=0.9),
    dict(repetition_penalty=0.8, temperature=0.5, top_p=0.3),
    dict(repetition_penalty=2.0, top_k=1),
    dict(temperature=2.0, top_p=0.999),
    dict(top_k=3, top_p=0.05),
]


def main() -> None:
    g = torch.Generator().manual_seed(0)
    cases = []
    for i, s in enumerate(SETTINGS):
        vocab = 16 + 3 * i
        logits = (torch.randn(vocab, generator=g) * 3).float()
        logits[1] = logits[2]  # a tie
        seen = torch.randint(0, vocab, (6,), generator=g)
        procs = LogitsProcessorList()
        if "repetition_penalty" in s:
            procs.append(RepetitionPenaltyLogitsProcessor(s["repetition_penalty"]))
        if "temperature" in s:
            procs.append(TemperatureLogitsWarper(s["temperature"]))
        if "top_k" in s:
            procs.append(TopKLogitsWarper(s["top_k"]))
        if "top_p" in s:
            procs.append(TopPLogitsWarper(s["top_p"]))
        out = procs(seen[None, :], logits[None, :].clone())[0]
        cases.append(
            dict(
                settings=s,
                logits=logits.tolist(),
                seen=seen.tolist(),
                processed=[None if v == float("-inf") else v for v in out.tolist()],
                kept=[j for j, v in enumerate(out.tolist()) if v != float("-inf")],
            )
        )
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(
        json.dumps(dict(torch=torch.__version__, transformers=transformers.__version__, cases=cases), indent=1)
        + "\n"
    )
    print(f"wrote {OUT} ({len(cases)} cases)")


if __name__ == "__main__":
    main()
