"""The PyTorch + PEFT side of `npm run bench` (bench/side-by-side.ts): one LoRA training
step of a randomly initialised LlamaForCausalLM, timed, in f32 on the CPU.

    bench/baseline/.venv/bin/python bench/baseline/lora_step.py [--shapes FILE|-]
        [--recipe bench/baseline/lora-r16-qkvo.json] [--threads 2] [--warmup 2]

Prints one JSON line per shape: tokens/s (batch * seq / mean wall time of a step),
ms/step, and the torch / transformers / peft versions. A step is forward, loss,
backward, AdamW step, zero_grad, as in a PEFT training loop.

The shapes come from bench/side-by-side.ts (a JSON list of {name, config (HF
config.json), batch, seq, steps}) so both sides compile the same model; without
--shapes the two stated shapes below are used. The recipe (LoRA r, alpha, dropout,
targets, AdamW betas/eps/weight_decay) is the same JSON file peftc reads.
Inputs match bench/step-feeds.ts: token i of the batch is (i * 7919) % 256, labels =
inputs. Seeds are fixed (torch.manual_seed(0)).
"""

import argparse
import json
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))

def _shape(name, batch, seq, steps, **config):
    common = dict(architectures=["LlamaForCausalLM"], model_type="llama", rms_norm_eps=1e-6, rope_theta=10000,
                  tie_word_embeddings=False, attention_bias=False, mlp_bias=False, hidden_act="silu")
    return {"name": name, "config": dict(common, **config), "batch": batch, "seq": seq, "steps": steps}


# The stated shapes for a standalone run (side-by-side.ts passes its own, from peftc's presets).
DEFAULT_SHAPES = [
    _shape("tiny", 2, 16, 100, vocab_size=259, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
           num_attention_heads=4, num_key_value_heads=2, head_dim=16, max_position_embeddings=512),
    _shape("small", 4, 128, 5, vocab_size=4096, hidden_size=512, intermediate_size=1376, num_hidden_layers=4,
           num_attention_heads=8, num_key_value_heads=8, head_dim=64, max_position_embeddings=2048),
]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--shapes", help="JSON file with the shapes ('-' = stdin); default: the stated two")
    ap.add_argument("--recipe", default=os.path.join(HERE, "lora-r16-qkvo.json"))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--warmup", type=int, default=2)
    args = ap.parse_args()

    import peft
    import torch
    import transformers
    from peft import LoraConfig, get_peft_model
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.set_num_threads(args.threads)
    transformers.logging.set_verbosity_error()
    if args.shapes:
        shapes = json.load(sys.stdin if args.shapes == "-" else open(args.shapes))
    else:
        shapes = DEFAULT_SHAPES
    with open(args.recipe) as f:
        recipe = json.load(f)
    (lora,) = [m for m in recipe["methods"] if m["method"] == "lora"]
    opt = recipe["optimizer"]

    for shape in shapes:
        torch.manual_seed(0)
        hf = {k: v for k, v in shape["config"].items() if k not in ("architectures", "torch_dtype")}
        config = LlamaConfig(**hf)
        model = LlamaForCausalLM(config).float()
        model = get_peft_model(
            model,
            LoraConfig(
                r=lora["r"],
                lora_alpha=lora["lora_alpha"],
                lora_dropout=lora.get("lora_dropout", 0.0),
                target_modules=lora["target_modules"],
                task_type="CAUSAL_LM",
            ),
        )
        model.train()
        trainable = [p for p in model.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(
            trainable,
            lr=opt.get("lr", 1e-4),
            betas=tuple(opt.get("betas", (0.9, 0.999))),
            eps=opt.get("eps", 1e-8),
            weight_decay=opt.get("weight_decay", 0.0),
        )
        batch, seq, steps = shape["batch"], shape["seq"], shape["steps"]
        ids = (torch.arange(batch * seq, dtype=torch.int64) * 7919 % 256).reshape(batch, seq)

        def step() -> float:
            loss = model(input_ids=ids, labels=ids).loss
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            return loss.item()

        for _ in range(args.warmup):
            step()
        t0 = time.perf_counter()
        for _ in range(steps):
            loss = step()
        ms = (time.perf_counter() - t0) * 1000 / steps
        print(
            json.dumps(
                {
                    "shape": shape["name"],
                    "batch": batch,
                    "seq": seq,
                    "steps": steps,
                    "threads": torch.get_num_threads(),
                    "tokens_per_s": batch * seq * 1000 / ms,
                    "ms_per_step": ms,
                    "loss": loss,
                    "trainable_params": sum(p.numel() for p in trainable),
                    "torch": torch.__version__,
                    "transformers": transformers.__version__,
                    "peft": peft.__version__,
                    "attn_implementation": model.config._attn_implementation,
                }
            ),
            flush=True,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
