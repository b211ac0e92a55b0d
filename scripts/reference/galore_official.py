"""Golden fixture: the official GaLoreAdamW (jiaweizzhao/GaLore, galore_torch) on small weights.

Run from the repository root with torch and transformers installed (the official adamw.py
imports transformers.utils.versions):

    PYTHONHASHSEED=0 python scripts/reference/galore_official.py [GALORE_REPO]

GALORE_REPO is a clone of https://github.com/jiaweizzhao/GaLore (a bare git dir works; the
default is the mirror at /work/.mirror/jiaweizzhao+GaLore/repo). Nothing of it is vendored:
at run time its galore_torch/adamw.py and galore_projector.py
are copied (git show at the fixture's commit, or read from a work tree) into a temporary
package and imported from there (galore_projector_tensor.py, >2-D params only, needs
tensorly and is stubbed). galore_torch/__init__.py is not used: it imports
adamw8bit.py, which needs bitsandbytes (no CPU build here), so GaLoreAdamW8bit has no
fixture.

One GaLoreAdamW with one param group per case (proj_type std / reverse_std / left / right /
full on tall, wide and square weights), lr 1e-2, weight_decay 0.1, scale 0.25,
update_proj_gap 2, default betas and eps, fixed random gradients for STEPS steps. Writes
test/fixtures/galore/official-adamw.json: per case the initial weight, per step the gradient,
the weight after the step and the projector(s) the step used; test/methods/galore-golden.test.ts
compares peftc's galore rule with it (no Python in CI).
"""

import json
import pathlib
import subprocess
import sys
import tempfile

import numpy as np
import torch
import transformers

ROOT = pathlib.Path(__file__).resolve().parents[2]
OUT = ROOT / "test" / "fixtures" / "galore" / "official-adamw.json"
COMMIT = "2cc66f8"
FILES = ["adamw.py", "galore_projector.py"]
# galore_projector_tensor.py (the projector of >2-D params) imports tensorly, which is not
# installed here; 2-D weights never reach it, so it is replaced by a stub that refuses.
TENSOR_STUB = (
    "class GaLoreProjectorTensor:\n"
    "    def __init__(self, *a, **k):\n"
    "        raise NotImplementedError('tensor projector not loaded (2-D weights only)')\n"
)

OPT = dict(lr=1e-2, weight_decay=0.1)
GROUP = dict(update_proj_gap=2, scale=0.25)
STEPS = 5
# (name, [m, n], rank, proj_type)
CASES = [
    ("std_tall", [10, 6], 2, "std"),
    ("std_wide", [6, 10], 3, "std"),
    ("std_square", [8, 8], 4, "std"),
    ("reverse_std_tall", [10, 6], 2, "reverse_std"),
    ("reverse_std_wide", [6, 10], 3, "reverse_std"),
    ("left", [8, 8], 3, "left"),
    ("right", [6, 10], 2, "right"),
    ("full", [10, 6], 3, "full"),
]


def official_package(repo: pathlib.Path, into: pathlib.Path) -> str:
    pkg = into / "galore_official_torch"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "galore_projector_tensor.py").write_text(TENSOR_STUB)
    for f in FILES:
        src = repo / "galore_torch" / f
        if src.exists():
            text = src.read_text()
        else:
            text = subprocess.run(
                ["git", "--git-dir", str(repo), "show", f"{COMMIT}:galore_torch/{f}"],
                check=True,
                capture_output=True,
                text=True,
            ).stdout
        (pkg / f).write_text(text)
    return pkg.name


def f32(t: torch.Tensor) -> list:
    # Shortest decimal that reads back as the same float32.
    return [float(str(x)) for x in t.detach().to(torch.float32).numpy().astype(np.float32).ravel()]


def main() -> None:
    repo = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else "/work/.mirror/jiaweizzhao+GaLore/repo")
    with tempfile.TemporaryDirectory() as tmp:
        sys.path.insert(0, tmp)
        name = official_package(repo, pathlib.Path(tmp))
        adamw = __import__(f"{name}.adamw", fromlist=["AdamW"])
        torch.manual_seed(0)
        params = [torch.nn.Parameter(torch.randn(*shape)) for _, shape, _, _ in CASES]
        init = [p.detach().clone() for p in params]
        groups = [
            {"params": [p], "rank": rank, "proj_type": pt, **GROUP}
            for p, (_, _, rank, pt) in zip(params, CASES)
        ]
        opt = adamw.AdamW(groups, **OPT, no_deprecation_warning=True)
        steps = [[] for _ in CASES]
        for _ in range(STEPS):
            for p in params:
                p.grad = torch.randn_like(p)
            opt.step()
            for i, p in enumerate(params):
                proj = opt.state[p]["projector"].ortho_matrix
                mats = proj if isinstance(proj, list) else [proj]
                steps[i].append(
                    {
                        "grad": f32(p.grad),
                        "weight": f32(p),
                        "projectors": [{"shape": list(m.shape), "data": f32(m)} for m in mats],
                    }
                )
        sys.path.remove(tmp)
    cases = [
        {"name": n, "shape": shape, "rank": rank, "proj_type": pt, "init": f32(w), "steps": s}
        for (n, shape, rank, pt), w, s in zip(CASES, init, steps)
    ]
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(
        json.dumps(
            {
                "source": f"jiaweizzhao/GaLore@{COMMIT} galore_torch/adamw.py (GaLoreAdamW)",
                "versions": {"torch": torch.__version__, "transformers": transformers.__version__},
                "optimizer": {**OPT, "betas": [0.9, 0.999], "eps": 1e-6, "correct_bias": True},
                "group": GROUP,
                "cases": cases,
            }
        )
        + "\n"
    )
    print(f"wrote {OUT.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
