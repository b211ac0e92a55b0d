"""Golden fixture: the optimizer groups PEFT's create_loraplus_optimizer builds.

Run from the repository root with torch, transformers and peft installed (a virtual
environment; versions as in the fixture's "versions" field):

    python scripts/reference/loraplus_groups.py

It builds a randomly initialised LlamaForCausalLM from examples/models/tiny-llama/config.json
(only names and shapes matter), adds LoRA on q_proj, v_proj and embed_tokens with the norms
and lm_head as modules_to_save, calls create_loraplus_optimizer and writes, for each param
group in PEFT's order, its lr, weight decay and param names to
test/fixtures/peft/loraplus-groups.json. test/methods/loraplus.test.ts compares
peftc's groups with it, so CI needs no Python.
"""

import json
import pathlib

import peft
import torch
import transformers
from peft import LoraConfig, get_peft_model
from peft.optimizers import create_loraplus_optimizer
from transformers import LlamaConfig, LlamaForCausalLM

ROOT = pathlib.Path(__file__).resolve().parents[2]
OUT = ROOT / "test" / "fixtures" / "peft" / "loraplus-groups.json"

LORA = dict(
    r=2,
    lora_alpha=4,
    target_modules=["q_proj", "v_proj", "embed_tokens"],
    modules_to_save=["norm", "lm_head"],
)
# peft 0.21: lr and loraplus_lr_ratio are keywords; every group sets its own weight decay
# (loraplus_weight_decay, 0 for the B-side biases), so the optimizer's own is never used.
OPTIMIZER = dict(lr=1e-3, weight_decay=0.01)
LORAPLUS = dict(loraplus_lr_ratio=16.0, loraplus_lr_embedding=1e-6, loraplus_weight_decay=0.05)


def main() -> None:
    torch.manual_seed(0)
    cfg = json.loads((ROOT / "examples" / "models" / "tiny-llama" / "config.json").read_text())
    model = get_peft_model(LlamaForCausalLM(LlamaConfig(**cfg)), LoraConfig(**LORA))
    opt = create_loraplus_optimizer(model, optimizer_cls=torch.optim.AdamW, **OPTIMIZER, **LORAPLUS)
    names = {id(p): n for n, p in model.named_parameters()}
    groups = [
        {
            "lr": g["lr"],
            "weight_decay": g["weight_decay"],
            "params": [names[id(p)] for p in g["params"]],
        }
        for g in opt.param_groups
    ]
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(
        json.dumps(
            {
                "versions": {
                    "torch": torch.__version__,
                    "transformers": transformers.__version__,
                    "peft": peft.__version__,
                },
                "lora_config": LORA,
                "optimizer": OPTIMIZER,
                "loraplus": LORAPLUS,
                "groups": groups,
            },
            indent=2,
        )
        + "\n"
    )
    print(f"wrote {OUT.relative_to(ROOT)}: {[len(g['params']) for g in groups]} params per group")


if __name__ == "__main__":
    main()
