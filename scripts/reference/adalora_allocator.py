"""Golden fixture: PEFT 0.21's AdaLoRA RankAllocator, step by step, on fed gradients.

Run from the repository root with torch and peft installed (versions in the fixture):

    python scripts/reference/adalora_allocator.py

It puts AdaLoRA (init_r 4, target_r 2, tinit 1, tfinal 2, total_step 8, deltaT 1,
beta1 0.85, beta2 0.7) on the q_proj and v_proj (3 x 3, no bias) of a model shaped like
test/methods/properties.ts testModel (module paths model.layers.0.self_attn.*), sets
lora_A / lora_E / lora_B to seeded values, and for t = 1..8 sets every adapter param's
.grad to a seeded tensor, takes a torch.optim.SGD step (lr 0.05) and calls
update_and_allocate(t - 1) (global_step as PEFT's AdaLoRA example passes it), then records
the params, exp_avg_ipt, exp_avg_unc and the config's rank_pattern. The values are float32
written exactly. test/methods/adalora-peft.test.ts replays the same gradients through
peftc's compiled step (SGD + AdaLoRA's update observer) and its host session.
"""

import json
import pathlib

import numpy as np
import peft
import torch
from peft import AdaLoraConfig, get_peft_model
from torch import nn

ROOT = pathlib.Path(__file__).resolve().parents[2]
OUT = ROOT / "test" / "fixtures" / "peft" / "adalora-allocator.json"
CONFIG = dict(init_r=4, target_r=2, tinit=1, tfinal=2, total_step=8, deltaT=1, beta1=0.85, beta2=0.7)
LR = 0.05


class Attn(nn.Module):
    def __init__(self):
        super().__init__()
        self.q_proj = nn.Linear(3, 3, bias=False)
        self.v_proj = nn.Linear(3, 3, bias=False)


class Layer(nn.Module):
    def __init__(self):
        super().__init__()
        self.self_attn = Attn()


class Inner(nn.Module):
    def __init__(self):
        super().__init__()
        self.layers = nn.ModuleList([Layer()])


class Root(nn.Module):
    def __init__(self):
        super().__init__()
        self.model = Inner()

    def forward(self, x):
        return x


def main():
    torch.manual_seed(0)
    cfg = AdaLoraConfig(**CONFIG, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    pm = get_peft_model(Root(), cfg)
    rng = np.random.default_rng(7)
    params = {n: p for n, p in pm.base_model.model.named_parameters() if "lora_" in n}
    init = {}
    for n, p in sorted(params.items()):
        v = rng.standard_normal(tuple(p.shape)).astype(np.float32) * 0.5
        p.data = torch.tensor(v)
        init[n] = v.tolist()
    opt = torch.optim.SGD(list(params.values()), lr=LR)
    steps = []
    for t in range(1, CONFIG["total_step"] + 1):
        grads = {}
        for n, p in sorted(params.items()):
            g = rng.standard_normal(tuple(p.shape)).astype(np.float32) * 0.5
            p.grad = torch.tensor(g)
            grads[n] = g.tolist()
        opt.step()
        pm.base_model.update_and_allocate(t - 1)
        ra = pm.base_model.rankallocator
        steps.append(
            {
                "grads": grads,
                "exp_avg_ipt": {n: v.tolist() for n, v in ra.exp_avg_ipt.items()},
                "exp_avg_unc": {n: v.tolist() for n, v in ra.exp_avg_unc.items()},
                "params": {n: p.detach().numpy().tolist() for n, p in sorted(params.items())},
                "rank_pattern": cfg.rank_pattern,
            }
        )
        opt.zero_grad()
    record = {
        "versions": {"torch": torch.__version__, "peft": peft.__version__},
        "config": CONFIG,
        "lr": LR,
        "init": init,
        "steps": steps,
    }
    OUT.write_text(json.dumps(record) + "\n")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
