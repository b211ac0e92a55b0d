"""Golden fixture: S2-Attn as the official LongLoRA code computes it.

Run from the repository root with torch installed (a virtual environment):

    python scripts/reference/longlora_s2attn.py

The attention core of dvlab-research/LongLoRA llama_attn_replace.py (commit d4eb344):
  - "roll": forward_noflashattn after RoPE: repeat_kv, the `shift` function (roll the
    second half of the heads by -group_size // 2, regroup), causal softmax attention inside
    each group (the sliced causal mask), then the output's second half rolled back by
    group_size // 2. Transcribed line by line from that function.
  - "no_wrap": forward_flashattn: heads split in halves as two batch entries, sequence
    boundaries cu_q_lens built exactly as the official code builds them, and
    flash_attn_varlen_qkvpacked_func(causal=True) emulated by causal attention inside each
    [cu_q_lens[i], cu_q_lens[i+1]) segment (flash-attn does not run on a CPU).
It writes test/fixtures/longlora/s2attn.json (q, k, v and both outputs);
test/methods/s2-attn.test.ts compares peftc's S2-Attn with it, so CI needs no Python.
"""

import json
import math
import pathlib

import torch

ROOT = pathlib.Path(__file__).resolve().parents[2]
OUT = ROOT / "test" / "fixtures" / "longlora" / "s2attn.json"

BSZ, NUM_HEADS, NUM_KV, Q_LEN, HEAD_DIM = 2, 4, 2, 16, 4
GROUP_SIZE_RATIO = 1 / 4


def repeat_kv(x, n_rep):
    b, h, s, d = x.shape
    return x[:, :, None, :, :].expand(b, h, n_rep, s, d).reshape(b, h * n_rep, s, d)


def noflash(query_states, key_states, value_states):
    bsz, q_len = BSZ, Q_LEN
    group_size = int(q_len * GROUP_SIZE_RATIO)
    num_group = q_len // group_size
    key_states = repeat_kv(key_states, NUM_HEADS // NUM_KV)
    value_states = repeat_kv(value_states, NUM_HEADS // NUM_KV)

    def shift(qkv, bsz, q_len, group_size, num_heads, head_dim):
        qkv[:, num_heads // 2 :] = qkv[:, num_heads // 2 :].roll(-group_size // 2, dims=2)
        qkv = qkv.transpose(1, 2).reshape(bsz * (q_len // group_size), group_size, num_heads, head_dim).transpose(1, 2)
        return qkv

    query_states = shift(query_states.clone(), bsz, q_len, group_size, NUM_HEADS, HEAD_DIM)
    key_states = shift(key_states.clone(), bsz, q_len, group_size, NUM_HEADS, HEAD_DIM)
    value_states = shift(value_states.clone(), bsz, q_len, group_size, NUM_HEADS, HEAD_DIM)
    attn_weights = torch.matmul(query_states, key_states.transpose(2, 3)) / math.sqrt(HEAD_DIM)
    causal = torch.full((group_size, group_size), float("-inf")).triu(1)
    attn_weights = attn_weights + causal
    attn_weights = torch.softmax(attn_weights, dim=-1, dtype=torch.float32)
    attn_output = torch.matmul(attn_weights, value_states)
    attn_output = attn_output.transpose(1, 2).contiguous()
    attn_output = attn_output.reshape(bsz, q_len, NUM_HEADS, HEAD_DIM)
    attn_output[:, :, NUM_HEADS // 2 :] = attn_output[:, :, NUM_HEADS // 2 :].roll(group_size // 2, dims=1)
    return attn_output.transpose(1, 2)  # [bsz, heads, q_len, head_dim] like peftc's attention


def flash(query_states, key_states, value_states):
    bsz, q_len = BSZ, Q_LEN
    key_states = repeat_kv(key_states, NUM_HEADS // NUM_KV)
    value_states = repeat_kv(value_states, NUM_HEADS // NUM_KV)
    qkv = torch.stack([query_states, key_states, value_states], dim=2)  # [bsz, nh, 3, q_len, hd]
    qkv = qkv.transpose(1, 3)  # [bsz, q_len, 3, nh, hd]
    group_size = int(q_len * GROUP_SIZE_RATIO)
    qkv = qkv.reshape(bsz, q_len, 3, 2, NUM_HEADS // 2, HEAD_DIM).permute(0, 3, 1, 2, 4, 5).reshape(
        bsz * 2, q_len, 3, NUM_HEADS // 2, HEAD_DIM
    )
    # unpad_input with no padding: every row whole; cu_q_lens = [0, q_len, 2 q_len, ...].
    x_unpad = qkv.reshape(bsz * 2 * q_len, 3, NUM_HEADS // 2, HEAD_DIM)
    cu_q_lens = torch.arange(0, (bsz * 2 + 1) * q_len, q_len, dtype=torch.int32)
    max_s = q_len
    cu_q_len_tmp = torch.arange(0, max_s, group_size, dtype=cu_q_lens.dtype)
    cu_q_len_tmp = torch.stack([cu_q_len_tmp, cu_q_len_tmp + group_size // 2]).repeat(bsz, 1) + cu_q_lens[:-1].unsqueeze(-1)
    cu_q_lens = torch.cat([cu_q_len_tmp, cu_q_lens[1:].unsqueeze(-1)], dim=-1).view(-1)
    # flash_attn_varlen_qkvpacked_func(x_unpad, cu_q_lens, group_size, 0.0, causal=True), emulated.
    out = torch.zeros(x_unpad.shape[0], NUM_HEADS // 2, HEAD_DIM)
    for s, e in zip(cu_q_lens[:-1].tolist(), cu_q_lens[1:].tolist()):
        if e <= s:
            continue
        q, k, v = x_unpad[s:e, 0], x_unpad[s:e, 1], x_unpad[s:e, 2]  # [len, h, d]
        w = torch.einsum("ihd,jhd->hij", q, k) / math.sqrt(HEAD_DIM)
        w = w + torch.full((e - s, e - s), float("-inf")).triu(1)
        out[s:e] = torch.einsum("hij,jhd->ihd", torch.softmax(w, dim=-1), v)
    output = out.reshape(bsz * 2, q_len, NUM_HEADS // 2, HEAD_DIM)
    output = output.reshape(bsz, 2, q_len, NUM_HEADS // 2, HEAD_DIM).transpose(1, 2).reshape(bsz, q_len, NUM_HEADS, HEAD_DIM)
    return output.transpose(1, 2)


def main():
    g = torch.Generator().manual_seed(0)
    q = torch.randn(BSZ, NUM_HEADS, Q_LEN, HEAD_DIM, generator=g)
    k = torch.randn(BSZ, NUM_KV, Q_LEN, HEAD_DIM, generator=g)
    v = torch.randn(BSZ, NUM_KV, Q_LEN, HEAD_DIM, generator=g)
    flat = lambda t: {"shape": list(t.shape), "data": t.flatten().tolist()}
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(
        json.dumps(
            {
                "torch": torch.__version__,
                "source": "dvlab-research/LongLoRA llama_attn_replace.py @ d4eb344",
                "group_size_ratio": GROUP_SIZE_RATIO,
                "q": flat(q),
                "k": flat(k),
                "v": flat(v),
                "roll": flat(noflash(q, k, v)),
                "no_wrap": flat(flash(q, k, v)),
            }
        )
        + "\n"
    )


if __name__ == "__main__":
    main()
