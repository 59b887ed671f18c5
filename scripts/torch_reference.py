#!/usr/bin/python3
"""PyTorch peer of PSM Lab's Llama-family engine.

Reads a model folder written by the engine's saveModelFolder (config.json in Hugging Face form plus
model.safetensors with HF Llama/Qwen2 tensor names) and an inputs JSON, rebuilds the same decoder in plain
PyTorch (no transformers, no safetensors package: both are parsed here), and writes

  logits          [batch, seq_len, vocab]   for every position
  loss            [1]                       weighted mean cross-entropy: sum_i w_i * ce_i / sum_i w_i
  grad.<name>     same shape as <name>      d loss / d parameter, for every tensor in model.safetensors

to a safetensors file (F32). With tied embeddings the unembedding is model.embed_tokens.weight itself, so
its gradient holds both uses, as in Hugging Face's LlamaForCausalLM.

The architecture follows Hugging Face's LlamaForCausalLM / Qwen2ForCausalLM: RMSNorm (x * rsqrt(mean(x^2) +
eps) * w), rotary embeddings in the rotate_half convention (inv_freq = theta^(-2i/d), cos/sin of
cat(freqs, freqs)), grouped-query attention (query head h reads key/value head h // (heads / kv_heads)),
causal softmax with scale 1/sqrt(head_dim), SwiGLU MLP down(silu(gate(x)) * up(x)), optional q/k/v biases.

Inputs JSON: {"batch": B, "seq_len": T, "ids": [B*T ints], "targets": [B*T ints],
              "weights": [B*T floats] or null (null: every token weighs 1; 0 masks a token)}

Usage: /usr/bin/python3 scripts/torch_reference.py --model DIR --inputs inputs.json --out ref.safetensors
                                                    [--dtype float64|float32] [--threads N]
The default dtype float64 gives a reference far more precise than either float32 implementation; float32
compares like for like with a float32 PyTorch run. A one-line JSON summary goes to stdout.
"""

import argparse
import json
import math
import os
import struct
import sys

import torch

DTYPES = {"F32": (torch.float32, 4), "F16": (torch.float16, 2), "BF16": (torch.bfloat16, 2), "F64": (torch.float64, 8)}


def read_safetensors(path):
    with open(path, "rb") as f:
        raw = f.read()
    if len(raw) < 8:
        raise ValueError(f"{path}: too short for a safetensors file")
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + n].decode("utf-8"))
    data = raw[8 + n :]
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        dtype, size = DTYPES[info["dtype"]]
        begin, end = info["data_offsets"]
        shape = info["shape"]
        count = math.prod(shape)
        if end - begin != count * size:
            raise ValueError(f"{path}: tensor {name} has {end - begin} bytes for shape {shape}")
        t = torch.frombuffer(bytearray(data[begin:end]), dtype=dtype) if count > 0 else torch.zeros(0, dtype=dtype)
        out[name] = t.reshape(shape).clone()
    return out


def write_safetensors(path, tensors, metadata=None):
    header = {}
    if metadata:
        header["__metadata__"] = {k: str(v) for k, v in metadata.items()}
    blobs = []
    offset = 0
    for name, t in tensors.items():
        b = t.detach().to(torch.float32).contiguous().cpu().numpy().tobytes()
        header[name] = {"dtype": "F32", "shape": list(t.shape), "data_offsets": [offset, offset + len(b)]}
        blobs.append(b)
        offset += len(b)
    h = json.dumps(header, separators=(",", ":")).encode("utf-8")
    h += b" " * ((8 - len(h) % 8) % 8)  # the format pads the header with spaces to 8-byte alignment
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)
    os.replace(tmp, path)


class Config:
    def __init__(self, raw):
        model_type = raw.get("model_type")
        if model_type not in ("llama", "qwen2"):
            raise ValueError(f"config.json: model_type {model_type!r} is not llama or qwen2")
        self.vocab = raw["vocab_size"]
        self.dim = raw["hidden_size"]
        self.layers = raw["num_hidden_layers"]
        self.heads = raw["num_attention_heads"]
        self.kv_heads = raw.get("num_key_value_heads") or self.heads
        self.hidden = raw["intermediate_size"]
        self.eps = raw.get("rms_norm_eps", 1e-6)
        self.theta = raw.get("rope_theta", 10000.0)
        self.tied = raw.get("tie_word_embeddings", False)
        # Same rule as the engine's fromHfConfig: Qwen2 always carries q/k/v biases.
        self.bias = True if model_type == "qwen2" else raw.get("attention_bias", False)
        self.head_dim = self.dim // self.heads
        if hidden_act := raw.get("hidden_act"):
            if hidden_act != "silu":
                raise ValueError(f"config.json: hidden_act {hidden_act!r} is not silu")


def rms_norm(x, w, eps):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w


def rotate_half(x):
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


def linear(x, w, b=None):
    y = x @ w.t()
    return y + b if b is not None else y


def forward(cfg, p, ids, dtype):
    """ids [B, T] -> logits [B, T, V]. p maps HF names to leaf tensors."""
    bsz, seq = ids.shape
    hd, nh, nkv = cfg.head_dim, cfg.heads, cfg.kv_heads
    rep = nh // nkv
    inv_freq = 1.0 / (cfg.theta ** (torch.arange(0, hd, 2, dtype=dtype) / hd))
    freqs = torch.outer(torch.arange(seq, dtype=dtype), inv_freq)
    emb = torch.cat((freqs, freqs), dim=-1)
    cos, sin = emb.cos()[None, None], emb.sin()[None, None]  # [1, 1, T, hd]
    causal = torch.ones(seq, seq, dtype=torch.bool).tril()

    x = p["model.embed_tokens.weight"][ids]  # [B, T, D]
    for i in range(cfg.layers):
        pre = f"model.layers.{i}"
        h = rms_norm(x, p[f"{pre}.input_layernorm.weight"], cfg.eps)
        bias = (lambda n: p[f"{pre}.self_attn.{n}.bias"]) if cfg.bias else (lambda n: None)
        q = linear(h, p[f"{pre}.self_attn.q_proj.weight"], bias("q_proj")).view(bsz, seq, nh, hd).transpose(1, 2)
        k = linear(h, p[f"{pre}.self_attn.k_proj.weight"], bias("k_proj")).view(bsz, seq, nkv, hd).transpose(1, 2)
        v = linear(h, p[f"{pre}.self_attn.v_proj.weight"], bias("v_proj")).view(bsz, seq, nkv, hd).transpose(1, 2)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        # repeat_kv: [B, nkv, T, hd] -> [B, nkv * rep, T, hd], query head h reads kv head h // rep
        k = k[:, :, None].expand(bsz, nkv, rep, seq, hd).reshape(bsz, nh, seq, hd)
        v = v[:, :, None].expand(bsz, nkv, rep, seq, hd).reshape(bsz, nh, seq, hd)
        scores = (q @ k.transpose(-1, -2)) / math.sqrt(hd)
        scores = scores.masked_fill(~causal, float("-inf"))
        att = torch.softmax(scores, dim=-1) @ v  # [B, nh, T, hd]
        att = att.transpose(1, 2).reshape(bsz, seq, nh * hd)
        x = x + linear(att, p[f"{pre}.self_attn.o_proj.weight"])
        h2 = rms_norm(x, p[f"{pre}.post_attention_layernorm.weight"], cfg.eps)
        gate = linear(h2, p[f"{pre}.mlp.gate_proj.weight"])
        up = linear(h2, p[f"{pre}.mlp.up_proj.weight"])
        x = x + linear(torch.nn.functional.silu(gate) * up, p[f"{pre}.mlp.down_proj.weight"])
    x = rms_norm(x, p["model.norm.weight"], cfg.eps)
    head = p["model.embed_tokens.weight"] if cfg.tied else p["lm_head.weight"]
    return linear(x, head)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", required=True, help="model folder (config.json + model.safetensors)")
    ap.add_argument("--inputs", required=True, help="inputs JSON (batch, seq_len, ids, targets, weights)")
    ap.add_argument("--out", required=True, help="output safetensors file")
    ap.add_argument("--dtype", choices=["float64", "float32"], default="float64")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    dtype = getattr(torch, args.dtype)

    with open(os.path.join(args.model, "config.json")) as f:
        cfg = Config(json.load(f))
    weights_path = os.path.join(args.model, "model.safetensors")
    tensors = read_safetensors(weights_path)
    tensors = {k: v for k, v in tensors.items() if not k.endswith("rotary_emb.inv_freq")}
    if cfg.tied:
        tensors.pop("lm_head.weight", None)
    params = {k: v.to(dtype).requires_grad_(True) for k, v in tensors.items()}

    with open(args.inputs) as f:
        inp = json.load(f)
    bsz, seq = inp["batch"], inp["seq_len"]
    ids = torch.tensor(inp["ids"], dtype=torch.long).view(bsz, seq)
    targets = torch.tensor(inp["targets"], dtype=torch.long).view(-1)
    w = inp.get("weights")
    weights = torch.tensor(w, dtype=dtype) if w is not None else torch.ones(bsz * seq, dtype=dtype)
    if ids.numel() != bsz * seq or targets.numel() != bsz * seq or weights.numel() != bsz * seq:
        raise ValueError(f"{args.inputs}: ids, targets and weights must each hold batch * seq_len values")

    logits = forward(cfg, params, ids, dtype)
    ce = torch.nn.functional.cross_entropy(logits.reshape(-1, cfg.vocab), targets, reduction="none")
    loss = (ce * weights).sum() / weights.sum()
    loss.backward()

    out = {"logits": logits.detach(), "loss": loss.detach().reshape(1)}
    for name, t in params.items():
        out[f"grad.{name}"] = t.grad if t.grad is not None else torch.zeros_like(t)
    write_safetensors(args.out, out, {"torch_version": torch.__version__, "dtype": args.dtype})
    print(json.dumps({"loss": loss.item(), "torch": torch.__version__, "dtype": args.dtype, "params": len(params)}))


if __name__ == "__main__":
    try:
        main()
    except Exception as e:  # one clear line for the caller, with the traceback for debugging
        import traceback

        traceback.print_exc()
        print(f"torch_reference.py: {e}", file=sys.stderr)
        sys.exit(1)
