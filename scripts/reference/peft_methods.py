"""Golden fixtures: adapters PEFT itself saves, with PEFT's logits, for peftc to match.

Run from the repository root with torch, transformers and peft installed (a virtual
environment; the versions land in each fixture's "versions" field):

    PYTHONHASHSEED=0 python scripts/reference/peft_methods.py   # fixed hash seed: PEFT writes target_modules in set order

For each case it writes test/fixtures/peft/<case>/ with
  adapter/        what save_pretrained writes (adapter_config.json, adapter_model.safetensors)
  converted/      (PiSSA / OLoRA) the adapter converted to plain LoRA for the original weights
                  (save_pretrained(path_initial_model_for_weight_conversion=...))
  expected.json   input_ids [2, 8]; base_logits; logits (PeftModel.from_pretrained of adapter/
                  on a fresh base, model.eval()); merged_logits (merge_and_unload); for
                  PiSSA / OLoRA converted_logits (converted/ on a fresh base); for dora a
                  short AdamW training record and first-step gradients; for adalora
                  (scripts/reference/peft_adalora.py) the saved rank_pattern and a
                  step-by-step SGD record of PEFT's RankAllocator.
Logits are [2, 8, 259] f32, flattened. The model is examples/models/tiny-llama in float32
(peftc upcasts its bf16 weights to f32 the same way). The adapters are set to seeded
random non-zero values, so they change the logits clearly. test/methods/peft-golden.test.ts
and test/methods/dora-golden.test.ts compare peftc against these files, so CI needs no Python.
"""

import copy
import json
import pathlib
import shutil
import tempfile

import peft
import safetensors.torch
import torch
import transformers
from peft import LoraConfig, PeftModel, get_peft_model
from transformers import LlamaForCausalLM

ROOT = pathlib.Path(__file__).resolve().parents[2]
MODEL = ROOT / "examples" / "models" / "tiny-llama"
OUT = ROOT / "test" / "fixtures" / "peft"
VERSIONS = {"torch": torch.__version__, "transformers": transformers.__version__, "peft": peft.__version__}
IDS = torch.tensor([[256, 72, 101, 108, 108, 111, 32, 119], [256, 116, 104, 101, 32, 99, 97, 116]])


def base():
    torch.manual_seed(0)
    m = LlamaForCausalLM.from_pretrained(MODEL, torch_dtype=torch.float32, attn_implementation="eager")
    return m.eval()


def logits_of(model):
    with torch.no_grad():
        out = model(input_ids=IDS).logits.float()
    return {"shape": list(out.shape), "data": [float(f"{x:.8g}") for x in out.flatten().tolist()]}


def randomize(model, seed, magnitude=False):
    """Seeded random non-zero adapter values (as if trained)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_magnitude_vector" in name:
                if magnitude:
                    p.mul_(1 + 0.1 * torch.randn(p.shape, generator=g))
            elif "lora_A" in name or "lora_embedding_A" in name:
                p.add_(0.05 * torch.randn(p.shape, generator=g))
            elif "lora_B" in name or "lora_embedding_B" in name:
                p.add_(0.05 * torch.randn(p.shape, generator=g))


def write(case, expected):
    d = OUT / case
    d.mkdir(parents=True, exist_ok=True)
    expected = {"versions": VERSIONS, "case": case, "input_ids": IDS.tolist(), **expected}
    (d / "expected.json").write_text(json.dumps(expected) + "\n")


def save_adapter(model, case, sub="adapter", **kw):
    d = OUT / case / sub
    if d.exists():
        shutil.rmtree(d)
    model.save_pretrained(d, **kw)
    return d


def loaded_logits(adapter_dir, merged=False):
    m = PeftModel.from_pretrained(base(), adapter_dir).eval()
    if merged:
        m = m.merge_and_unload().eval()
    return logits_of(m)


def plain_case(case, config, seed, magnitude=False):
    model = get_peft_model(base(), config)
    randomize(model, seed, magnitude)
    d = save_adapter(model, case)
    return {
        "base_logits": logits_of(base()),
        "logits": loaded_logits(d),
        "merged_logits": loaded_logits(d, merged=True),
    }


def dora_training(adapter_dir):
    """3 AdamW steps from the saved DoRA adapter; losses, first-step grads, final tensors."""
    model = PeftModel.from_pretrained(base(), adapter_dir, is_trainable=True)
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-2, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0)
    losses, grads = [], {}
    watch = [
        "model.layers.0.self_attn.q_proj.lora_A",
        "model.layers.0.self_attn.q_proj.lora_B",
        "model.layers.0.self_attn.q_proj.lora_magnitude_vector",
    ]
    for step in range(3):
        opt.zero_grad()
        loss = model(input_ids=IDS, labels=IDS).loss
        loss.backward()
        losses.append(loss.item())
        if step == 0:
            for name, p in model.named_parameters():
                for w in watch:
                    if w in name and p.grad is not None:
                        grads[w] = {"shape": list(p.grad.shape), "data": p.grad.flatten().tolist()}
        opt.step()
    with torch.no_grad():
        final_loss = model(input_ids=IDS, labels=IDS).loss.item()
    state = peft.get_peft_model_state_dict(model)
    safetensors.torch.save_file(
        {k.removeprefix("base_model.model."): v.contiguous() for k, v in state.items()},
        str(OUT / "dora" / "train_final.safetensors"),
    )
    return {"lr": 1e-2, "steps": 3, "losses": losses, "final_loss": final_loss, "grads": grads}


def residual_case(case, init, seed, r=4, alpha=4):
    """PiSSA / OLoRA: residual-form adapter (PEFT recomputes the residual on load) and the converted one."""
    targets = ["q_proj", "v_proj", "down_proj"]
    torch.manual_seed(seed)
    model = get_peft_model(base(), LoraConfig(r=r, lora_alpha=alpha, target_modules=targets, init_lora_weights=init))
    tmp = pathlib.Path(tempfile.mkdtemp())
    initial = tmp / "initial"
    # The untrained adapter, saved with init_lora_weights=True as PEFT's example does.
    model.peft_config["default"].init_lora_weights = True
    model.save_pretrained(initial)
    model.peft_config["default"].init_lora_weights = init
    module = model.base_model.model.model.layers[0].self_attn.q_proj
    s = module.scaling["default"]
    with torch.no_grad():
        BA = (s * module.lora_B["default"].weight @ module.lora_A["default"].weight).float()
        residual = module.base_layer.weight.float().clone()
    randomize(model, seed + 1)
    out = {"base_logits": logits_of(base())}
    if not init.startswith("pissa_niter_"):
        d = save_adapter(model, case)
        out["logits"] = loaded_logits(d)
        out["merged_logits"] = loaded_logits(d, merged=True)
    else:
        out["note"] = "pissa_niter uses a randomized SVD: only the converted adapter is reproducible"
    c = save_adapter(model, case, "converted", path_initial_model_for_weight_conversion=str(initial))
    out["converted_logits"] = loaded_logits(c)
    with torch.no_grad():
        out["trained_logits"] = logits_of(model.eval())
    if "logits" in out:
        out["converted_max_diff"] = max(abs(a - b) for a, b in zip(out["logits"]["data"], out["converted_logits"]["data"]))
    out["init_delta"] = {
        "module": "model.layers.0.self_attn.q_proj",
        "scale": s,
        "BA": {"shape": list(BA.shape), "data": BA.flatten().tolist()},
        "residual": {"shape": list(residual.shape), "data": residual.flatten().tolist()},
    }
    shutil.rmtree(tmp)
    return out


def main():
    torch.manual_seed(0)
    write(
        "lora",
        plain_case(
            "lora",
            LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj", "down_proj", "embed_tokens", "lm_head"]),
            1,
        ),
    )
    write(
        "lora-rslora-pattern",
        plain_case(
            "lora-rslora-pattern",
            LoraConfig(
                r=4,
                lora_alpha=8,
                use_rslora=True,
                target_modules=["q_proj", "v_proj", "down_proj"],
                rank_pattern={"v_proj": 2},
                alpha_pattern={"down_proj": 3},
            ),
            2,
        ),
    )
    dora = plain_case(
        "dora",
        LoraConfig(r=4, lora_alpha=8, use_dora=True, target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "down_proj"]),
        3,
        magnitude=True,
    )
    dora["train"] = dora_training(OUT / "dora" / "adapter")
    write("dora", dora)
    write(
        "dora-embedding",
        plain_case("dora-embedding", LoraConfig(r=4, lora_alpha=8, use_dora=True, target_modules=["embed_tokens"]), 7, magnitude=True),
    )
    write("pissa", residual_case("pissa", "pissa", 4))
    write("olora", residual_case("olora", "olora", 5))
    write("pissa-niter", residual_case("pissa-niter", "pissa_niter_4", 6))
    # AdaLoRA (test/fixtures/peft/adalora): its own module, with PEFT's documented loop.
    from peft_adalora import adalora_cases

    adalora_cases()


if __name__ == "__main__":
    main()
