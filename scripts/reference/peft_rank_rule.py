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

from peft import PeftModel
from peft_methods import OUT, ROOT, base, loaded_logits, logits_of, write

CASE = OUT / "rank-rule"


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
    write(
        "rank-rule",
        {
            "modules": modules,
            "base_logits": logits_of(base()),
            "logits": loaded_logits(d),
            "merged_logits": loaded_logits(d, merged=True),
        },
    )


if __name__ == "__main__":
    main()
