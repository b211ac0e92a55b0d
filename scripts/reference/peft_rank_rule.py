"""Golden fixture for rank-rule: an adapter peftc trains, loaded by PEFT's own loader.

Run from the repository root (torch, transformers and peft installed, node for peftc):

    PYTHONHASHSEED=0 python scripts/reference/peft_rank_rule.py

It trains test/fixtures/peft/rank-rule/recipe.json (a rank-rule with a table by kind, an
expression over depth, rank 0 for the layer-0 modules of other kinds, an alpha rule reading
rank and in, use_rslora) for 8 steps on the CPU with `peftc train`, keeps the saved adapter
in test/fixtures/peft/rank-rule/adapter/, loads it with PeftModel.from_pretrained on the
bundled tiny-llama (f32) and writes test/fixtures/peft/rank-rule/expected.json:
  modules     per adapted module, PEFT's r and scaling (what PEFT made of rank_pattern /
              alpha_pattern / exclude_modules)
  logits      PEFT's logits for input_ids [2, 8]; merged_logits after merge_and_unload;
              base_logits without the adapter
test/methods/rank-rule-train.test.ts checks the allocation peftc makes for the recipe against
the config and PEFT's r / scaling, and peftc's logits for the adapter against PEFT's.
"""

import json
import pathlib
import shutil
import subprocess
import tempfile

import peft
import torch
import transformers
from peft import PeftModel
from transformers import LlamaForCausalLM

ROOT = pathlib.Path(__file__).resolve().parents[2]
MODEL = ROOT / "examples" / "models" / "tiny-llama"
CASE = ROOT / "test" / "fixtures" / "peft" / "rank-rule"
VERSIONS = {"torch": torch.__version__, "transformers": transformers.__version__, "peft": peft.__version__}
IDS = torch.tensor([[256, 72, 101, 108, 108, 111, 32, 119], [256, 116, 104, 101, 32, 99, 97, 116]])


def base():
    m = LlamaForCausalLM.from_pretrained(MODEL, torch_dtype=torch.float32, attn_implementation="eager")
    return m.eval()


def logits_of(model):
    with torch.no_grad():
        out = model(input_ids=IDS).logits.float()
    return {"shape": list(out.shape), "data": [float(f"{x:.8g}") for x in out.flatten().tolist()]}


def train_adapter():
    tmp = pathlib.Path(tempfile.mkdtemp())
    row = ([256] + list(b"the cat sat on the mat. " * 3))[:33]
    (tmp / "tokens.json").write_text(json.dumps([row] * 12))
    cmd = ["node", "bin/peftc.js", "train", "--model", "examples/models/tiny-llama",
           "--recipe", str(CASE / "recipe.json"), "--tokens", str(tmp / "tokens.json"),
           "--out", str(tmp / "run"), "--backend", "cpu", "--no-plot"]
    subprocess.run(cmd, cwd=ROOT, check=True)
    d = CASE / "adapter"
    if d.exists():
        shutil.rmtree(d)
    d.mkdir(parents=True)
    for f in ("adapter_config.json", "adapter_model.safetensors"):
        shutil.copy(tmp / "run" / f, d / f)
    shutil.rmtree(tmp)
    return d


def main():
    d = train_adapter()
    model = PeftModel.from_pretrained(base(), d).eval()
    modules = {}
    for name, mod in model.named_modules():
        r = getattr(mod, "r", None)
        if isinstance(r, dict) and "default" in r:
            modules[name.removeprefix("base_model.model.")] = {"r": r["default"], "scaling": mod.scaling["default"]}
    expected = {
        "versions": VERSIONS,
        "case": "rank-rule",
        "input_ids": IDS.tolist(),
        "modules": modules,
        "base_logits": logits_of(base()),
        "logits": logits_of(model),
        "merged_logits": logits_of(PeftModel.from_pretrained(base(), d).merge_and_unload().eval()),
    }
    (CASE / "expected.json").write_text(json.dumps(expected) + "\n")


if __name__ == "__main__":
    main()
