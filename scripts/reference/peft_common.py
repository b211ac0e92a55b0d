"""Shared helpers for scripts/reference/peft_methods.py (see its docstring for how to run it).

The base model, the fixed token batch, the JSON form of tensors and the way an adapter folder is
written and read back all live here so that every case is made the same way.
"""

import json
import os
import pathlib
import shutil

import peft
import torch
import transformers
from peft import PeftModel
from transformers import AutoModelForCausalLM

ROOT = pathlib.Path(__file__).resolve().parents[2]
# Relative on purpose: PEFT writes it into adapter_config.json as base_model_name_or_path,
# and an absolute path would leak this machine's layout into the fixtures.
MODEL_DIR = "examples/models/tiny-llama"
OUT_ROOT = ROOT / "test" / "fixtures" / "peft"
ADAPTER = "default"
# Every config names the task as users do. It matters for AdaLoRA: only a task model
# (PeftModelForCausalLM) calls AdaLoraModel.forward, which adds the orthogonality penalty to the
# loss; a plain PeftModel (task_type None) calls the transformers model directly and skips it.
TASK = "CAUSAL_LM"


def versions() -> dict:
    return {"torch": torch.__version__, "transformers": transformers.__version__, "peft": peft.__version__}


def load_base() -> torch.nn.Module:
    """The bundled tiny LLaMA as peftc computes it: bf16 weights upcast to float32, eager attention."""
    os.chdir(ROOT)
    model = AutoModelForCausalLM.from_pretrained(MODEL_DIR, dtype=torch.float32, attn_implementation="eager")
    model.eval()
    return model


def input_ids() -> torch.Tensor:
    """The fixed batch every case uses: [2, 8] ids below 256 (the byte range of the tokenizer)."""
    g = torch.Generator().manual_seed(1234)
    return torch.randint(0, 256, (2, 8), generator=g)


def rounded(t: torch.Tensor) -> list:
    """Flat float32 values rounded to 7 significant digits (float32 carries about 7.2)."""
    return [float(f"{v:.7g}") for v in t.detach().to(torch.float32).flatten().tolist()]


def tensor_json(t: torch.Tensor) -> dict:
    return {"shape": list(t.shape), "data": rounded(t)}


@torch.no_grad()
def logits_of(model: torch.nn.Module, ids: torch.Tensor) -> torch.Tensor:
    return model(input_ids=ids).logits.detach().clone()


def loaded(adapter_dir: pathlib.Path, **kwargs) -> PeftModel:
    """PeftModel.from_pretrained on a fresh, untouched base: what a user of the saved folder gets."""
    model = PeftModel.from_pretrained(load_base(), str(adapter_dir), **kwargs)
    model.eval()
    return model


def loaded_logits(adapter_dir: pathlib.Path, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(logits, merged logits) of the adapter in adapter_dir loaded onto a fresh base."""
    model = loaded(adapter_dir)
    logits = logits_of(model, ids)
    merged = model.merge_and_unload()
    return logits, logits_of(merged, ids)


def save_adapter(model: PeftModel, out_dir: pathlib.Path, **kwargs) -> None:
    """save_pretrained into a clean folder, without the generated model card (README.md): the
    fixture keeps only the two files a loader reads, adapter_config.json and adapter_model.safetensors."""
    if out_dir.exists():
        shutil.rmtree(out_dir)
    model.save_pretrained(str(out_dir), **kwargs)
    card = out_dir / "README.md"
    if card.exists():
        card.unlink()


def saved_name(param_name: str) -> str:
    """A live parameter name as PEFT's saved state dict spells it: no adapter name, and DoRA's
    magnitude without the ".weight" of its DoraLinearLayer (peft/tuners/lora/model.py)."""
    name = param_name.replace(f".{ADAPTER}.", ".")
    if name.endswith(f".{ADAPTER}"):
        name = name[: -len(ADAPTER) - 1]
    if name.endswith("lora_magnitude_vector.weight"):
        name = name[: -len(".weight")]
    return name


def perturb_lora(model: torch.nn.Module, gen: torch.Generator, std: float = 0.05) -> None:
    """Sets every LoRA A and B (linear and embedding) to seeded N(0, std): a 'trained' adapter
    whose output differs clearly from the base (PEFT's own init has B = 0)."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if any(k in name for k in ("lora_A", "lora_B", "lora_embedding_A", "lora_embedding_B")):
                p.copy_(torch.randn(p.shape, generator=gen) * std)


def case_dir(case: str) -> pathlib.Path:
    d = OUT_ROOT / case
    if d.exists():
        shutil.rmtree(d)
    d.mkdir(parents=True)
    return d


def write_expected(d: pathlib.Path, payload: dict) -> None:
    """expected.json with one top-level key a line (readable keys, compact number arrays)."""
    lines = [f"  {json.dumps(k)}: {json.dumps(v, separators=(',', ':'))}" for k, v in payload.items()]
    (d / "expected.json").write_text("{\n" + ",\n".join(lines) + "\n}\n")


def max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max())
