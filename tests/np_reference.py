"""Float64 numpy references for the model math, written independently of jaxlm.ops (loops over heads,
explicit 2x2 rotation matrices for RoPE, CS336 state-dict keys) to test it against."""
import numpy as np


def f64(x):
    return np.asarray(x, dtype=np.float64)


def linear(x, w):
    return f64(x) @ f64(w).T


def silu(x):
    x = f64(x)
    return x / (1.0 + np.exp(-x))


def softmax(x, axis=-1):
    x = f64(x)
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def rmsnorm(x, g, eps=1e-5):
    x = f64(x)
    return x / np.sqrt((x * x).mean(-1, keepdims=True) + eps) * f64(g)


def swiglu(x, w1, w2, w3):
    return linear(silu(linear(x, w1)) * linear(x, w3), w2)


def silu_ffn(x, w1, w2):
    return linear(silu(linear(x, w1)), w2)


def sdpa(q, k, v, mask=None):
    q, k, v = f64(q), f64(k), f64(v)
    scores = q @ np.swapaxes(k, -1, -2) / np.sqrt(q.shape[-1])
    if mask is not None:
        scores = np.where(mask, scores, -np.inf)
    return softmax(scores) @ v


def rope(x, positions, theta):
    """Rotate each pair (x[2k], x[2k+1]) at position p by R(p / theta^(2k/d)) as a 2x2 matrix product."""
    x = f64(x)
    d = x.shape[-1]
    positions = np.broadcast_to(np.asarray(positions), x.shape[:-1])
    out = np.empty_like(x)
    for idx in np.ndindex(*x.shape[:-1]):
        for k in range(d // 2):
            a = positions[idx] / theta ** (2 * k / d)
            rot = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
            out[idx + (slice(2 * k, 2 * k + 2),)] = rot @ x[idx + (slice(2 * k, 2 * k + 2),)]
    return out


def mha(x, wq, wk, wv, wo, num_heads, theta=None, positions=None):
    """Causal MHA, one head at a time; RoPE on q and k when theta is given."""
    x = f64(x)
    t = x.shape[-2]
    d_k = f64(wq).shape[0] // num_heads
    positions = np.arange(t) if positions is None else np.asarray(positions)
    q, k, v = linear(x, wq), linear(x, wk), linear(x, wv)
    mask = np.tril(np.ones((t, t), dtype=bool))
    heads = []
    for h in range(num_heads):
        cols = slice(h * d_k, (h + 1) * d_k)
        qh, kh, vh = q[..., cols], k[..., cols], v[..., cols]
        if theta is not None:
            qh, kh = rope(qh, positions, theta), rope(kh, positions, theta)
        heads.append(sdpa(qh, kh, vh, mask))
    return linear(np.concatenate(heads, axis=-1), wo)


def block(w, x, cfg, prefix=""):
    """One block from CS336-keyed weights w (under prefix), honouring cfg's ablations."""
    g = lambda name: f64(w[prefix + name])
    theta = None if cfg.remove_rope else cfg.rope_theta
    attn = lambda h: mha(h, g("attn.q_proj.weight"), g("attn.k_proj.weight"), g("attn.v_proj.weight"),
                         g("attn.output_proj.weight"), cfg.num_heads, theta)
    if cfg.ffn_type == "swiglu":
        ffn = lambda h: swiglu(h, g("ffn.w1.weight"), g("ffn.w2.weight"), g("ffn.w3.weight"))
    else:
        ffn = lambda h: silu_ffn(h, g("ffn.w1.weight"), g("ffn.w2.weight"))
    if cfg.remove_rmsnorm:
        h = x + attn(x)
        return h + ffn(h)
    n1 = lambda h: rmsnorm(h, g("ln1.weight"), cfg.eps)
    n2 = lambda h: rmsnorm(h, g("ln2.weight"), cfg.eps)
    if cfg.use_post_norm:
        z = n1(x + attn(x))
        return n2(z + ffn(z))
    h = x + attn(n1(x))
    return h + ffn(n2(h))


def lm(w, ids, cfg):
    """Logits of the whole LM from a CS336 state dict."""
    x = f64(w["token_embeddings.weight"])[np.asarray(ids)]
    for i in range(cfg.num_layers):
        x = block(w, x, cfg, prefix=f"layers.{i}.")
    if not cfg.remove_rmsnorm:
        x = rmsnorm(x, w["ln_final.weight"], cfg.eps)
    return linear(x, w["lm_head.weight"])
