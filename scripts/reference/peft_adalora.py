"""AdaLoRA case for scripts/reference/peft_methods.py (see its docstring).

Training follows PEFT's documented loop (AdaLoraModel.update_and_allocate's docstring): forward
with labels (AdaLoraModel.forward adds orth_reg_weight * the orthogonality penalty to the loss),
backward, optimizer.step(), model.base_model.update_and_allocate(global_step), zero_grad().
global_step counts 1..total_step, so the last step is the forced final masking.
"""

import contextlib
import json

import torch
import torch.nn.functional as F
from peft import AdaLoraConfig, get_peft_model
from safetensors.torch import load_file, save_file

from peft_common import (
    TASK,
    case_dir,
    input_ids,
    load_base,
    loaded,
    loaded_logits,
    logits_of,
    max_diff,
    save_adapter,
    saved_name,
    tensor_json,
    versions,
    write_expected,
)

CONFIG = dict(
    task_type=TASK,
    init_r=4,
    target_r=2,
    tinit=0,
    tfinal=0,
    deltaT=1,
    total_step=4,
    lora_alpha=8,
    lora_dropout=0.0,
    beta1=0.85,
    beta2=0.85,
    orth_reg_weight=0.5,
    target_modules=["q_proj", "v_proj", "down_proj"],
)
# Modules whose lora_E importance statistics the SGD record dumps after every step.
IPT_MODULES = ["model.layers.0.self_attn.q_proj", "model.layers.1.mlp.down_proj"]


def fresh(seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    model = get_peft_model(load_base(), AdaLoraConfig(**CONFIG))
    model.train()
    return model


def randomize_start(model: torch.nn.Module, seed: int) -> None:
    """A start where every triplet matters: A, B ~ N(0, 0.1) and E ~ N(0, 0.3). PEFT's own init has
    E = 0, which makes the first gradients (and importances) of A and B exactly zero."""
    gen = torch.Generator().manual_seed(seed)
    std = {"lora_A": 0.1, "lora_B": 0.1, "lora_E": 0.3}
    with torch.no_grad():
        for name, p in model.named_parameters():
            for key, s in std.items():
                if f".{key}." in name:
                    p.copy_(torch.randn(p.shape, generator=gen) * s)


def adapter_tensors(model: torch.nn.Module) -> dict:
    """lora_A / lora_B / lora_E at full rank under PEFT's saved names (no ranknum: PEFT never saves it)."""
    return {
        saved_name(n): p.detach().clone().contiguous()
        for n, p in model.named_parameters()
        if any(f".{k}." in n for k in ("lora_A", "lora_B", "lora_E"))
    }


def load_tensors(model: torch.nn.Module, tensors: dict) -> None:
    with torch.no_grad():
        for n, p in model.named_parameters():
            if saved_name(n) in tensors:
                p.copy_(tensors[saved_name(n)])


@contextlib.contextmanager
def capture_kthvalue(sink: list):
    """Records the inputs and result of the torch.kthvalue call in RankAllocator.mask_to_budget:
    the concatenated triplet scores, k = init_bgt - budget, and the mask threshold."""
    original = torch.kthvalue

    def recording(scores, k, *args, **kwargs):
        out = original(scores, k, *args, **kwargs)
        sink.append({"scores": scores.detach().clone(), "k": int(k), "threshold": float(out[0])})
        return out

    torch.kthvalue = recording
    try:
        yield
    finally:
        torch.kthvalue = original


def module_order(model: torch.nn.Module) -> list[str]:
    """Adapted modules in named_parameters order: the order of the triplet scores in mask_to_budget."""
    return [n.split(".lora_A.")[0] for n, _ in model.base_model.model.named_parameters() if ".lora_A.default" in n]


def step_record(model: torch.nn.Module, step: int, loss: float, ce: float, calls: list) -> dict:
    allocator = model.base_model.rankallocator
    budget, mask_ind = allocator.budget_schedule(step)
    rec = {"step": step, "loss": loss, "ce_loss": ce, "budget": budget, "mask_ind": mask_ind}
    if calls:
        call = calls[-1]
        order = module_order(model)
        r = CONFIG["init_r"]
        rec["k"] = call["k"]
        rec["mask_threshold"] = call["threshold"]
        rec["triplet_scores"] = {
            f"base_model.model.{m}": tensor_json(call["scores"][i * r : (i + 1) * r]) for i, m in enumerate(order)
        }
    ipt = {}
    for m in IPT_MODULES:
        key = f"{m}.lora_E.default"
        if key in allocator.ipt:
            ipt[f"base_model.model.{m}.lora_E"] = {
                "ipt": tensor_json(allocator.ipt[key]),
                "exp_avg_ipt": tensor_json(allocator.exp_avg_ipt[key]),
                "exp_avg_unc": tensor_json(allocator.exp_avg_unc[key]),
            }
    # Empty at the final step: PEFT does not update the importances there and resets them after masking.
    rec["ipt"] = ipt
    pattern = model.peft_config["default"].rank_pattern or {}
    rec["rank_pattern"] = {k.replace(".default", ""): list(map(bool, v)) for k, v in pattern.items()}
    rec["lora_E"] = {
        saved_name(n): tensor_json(p) for n, p in model.named_parameters() if ".lora_E." in n
    }
    return rec


def sgd_record(d, ids: torch.Tensor, seed: int) -> dict:
    """Plain SGD from train_start.safetensors, every quantity RankAllocator computes, per step."""
    lr = 1e-2
    model = fresh(seed)
    load_tensors(model, load_file(str(d / "train_start.safetensors")))
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=lr)
    steps = []
    for step in range(1, CONFIG["total_step"] + 1):
        out = model(input_ids=ids, labels=ids)
        vocab = out.logits.shape[-1]
        ce = F.cross_entropy(out.logits[:, :-1].reshape(-1, vocab), ids[:, 1:].reshape(-1))
        out.loss.backward()
        opt.step()
        calls: list = []
        with capture_kthvalue(calls):
            model.base_model.update_and_allocate(step)
        steps.append(step_record(model, step, float(out.loss), float(ce), calls))
        opt.zero_grad()
    with torch.no_grad():
        final = float(model(input_ids=ids, labels=ids).loss)
    save_file(adapter_tensors(model), str(d / "train_final.safetensors"), metadata={"format": "pt"})
    return {
        "optimizer": "SGD",
        "lr": lr,
        "order": "forward with labels, backward, optimizer.step(), update_and_allocate(step), zero_grad()",
        "start": "train_start.safetensors",
        "final": "train_final.safetensors (full rank, masked lora_E entries zero)",
        "steps": steps,
        "final_loss": final,
    }


def adalora_cases() -> None:
    case, seed = "adalora", 41
    d = case_dir(case)
    ids = input_ids()
    model = fresh(seed)
    randomize_start(model, seed)
    start = adapter_tensors(model)
    save_file(start, str(d / "train_start.safetensors"), metadata={"format": "pt"})
    # torch's AdamW defaults, spelled out (weight_decay 0.01 included) and recorded.
    adamw = {"lr": 1e-2, "betas": [0.9, 0.999], "eps": 1e-8, "weight_decay": 0.01}
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], **adamw)
    adamw_losses = []
    for step in range(1, CONFIG["total_step"] + 1):
        loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        adamw_losses.append(float(loss))
        opt.step()
        model.base_model.update_and_allocate(step)
        opt.zero_grad()
    model.eval()
    in_memory = logits_of(model, ids)
    save_adapter(model, d / "adapter")
    base = logits_of(load_base(), ids)
    logits, merged = loaded_logits(d / "adapter", ids)
    assert max_diff(logits, in_memory) < 1e-5, "reloaded AdaLoRA adapter differs from the trained model"
    saved_config = json.loads((d / "adapter" / "adapter_config.json").read_text())
    write_expected(
        d,
        {
            "versions": versions(),
            "case": case,
            "input_ids": ids.tolist(),
            "base_logits": tensor_json(base),
            "logits": tensor_json(logits),
            "merged_logits": tensor_json(merged),
            "rank_pattern": saved_config["rank_pattern"],
            "adamw": adamw | {"losses": adamw_losses, "start": "train_start.safetensors"},
            "train": sgd_record(d, ids, seed),
        },
    )
    ranks = {k: sum(v) for k, v in saved_config["rank_pattern"].items()}
    print(f"{case}: |logits - base| {max_diff(logits, base):.4f}, merged {max_diff(logits, merged):.2e}, ranks {ranks}")
