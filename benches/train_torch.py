"""PyTorch side of `arbor bench train`: the same DPO or OREO step as arbor's, on the same
Hugging Face checkpoint and the same token batch (written by arbor), on the CPU or a CUDA GPU
(float32 both, TF32 off: the precision arbor computes in; `--precision bf16|f16` runs the
forward under autocast, PyTorch's mixed precision, against arbor's `precision` key).

Prints one JSON line: seconds per step (mean over the timed steps after one warm-up), response
tokens per second, and each step's loss (the first must match arbor's: same model, same data).
Usage: python benches/train_torch.py --model DIR --batch batch.json --steps 3 [--device cuda]
"""
import argparse
import copy
import json
import time

import torch
import torch.nn.functional as F
import transformers
from transformers import AutoModelForCausalLM


DEVICE = torch.device("cpu")


def batch_tensors(seqs):
    """Left-padded ids, attention mask, position ids and the response mask of `[B, T-1]`."""
    T = max(len(s["tokens"]) for s in seqs)
    ids = torch.zeros(len(seqs), T, dtype=torch.long)
    att = torch.zeros(len(seqs), T, dtype=torch.long)
    act = torch.zeros(len(seqs), T - 1)
    for b, s in enumerate(seqs):
        n = len(s["tokens"])
        pad = T - n
        ids[b, pad:] = torch.tensor(s["tokens"])
        att[b, pad:] = 1
        act[b, pad + s["prompt_len"] - 1 :] = 1.0
    pos = (att.cumsum(1) - 1).clamp(min=0)
    return ids.to(DEVICE), att.to(DEVICE), pos.to(DEVICE), act.to(DEVICE)


def token_logprobs(model, ids, att, pos, keep_dist=False):
    out = model(input_ids=ids, attention_mask=att, position_ids=pos, output_hidden_states=True)
    logp = F.log_softmax(out.logits[:, :-1].float(), dim=-1)
    lp = logp.gather(2, ids[:, 1:].unsqueeze(2)).squeeze(2)
    return lp, (logp if keep_dist else None), out.hidden_states[-1]


def dpo_loss(policy, ref, seqs, beta):
    ids, att, pos, act = batch_tensors(seqs)
    lp, _, _ = token_logprobs(policy, ids, att, pos)
    with torch.no_grad():
        rlp, _, _ = token_logprobs(ref, ids, att, pos)
    s = ((lp - rlp) * act).sum(1).view(-1, 2)
    return -F.logsigmoid(beta * (s[:, 0] - s[:, 1])).mean(), None


class Critic(torch.nn.Module):
    def __init__(self, lm):
        super().__init__()
        self.trunk = lm.model
        self.head = torch.nn.Linear(lm.config.hidden_size, 1, bias=False)
        torch.nn.init.zeros_(self.head.weight)

    def forward(self, ids, att, pos):
        h = self.trunk(input_ids=ids, attention_mask=att, position_ids=pos).last_hidden_state
        return self.head(h).squeeze(-1)


def oreo_loss(policy, ref, critic, seqs, rewards, beta, alpha):
    """Token-level OREO (eqs. 11-13): value loss with sg(ρ), policy loss with sg(V) and the exact KL."""
    ids, att, pos, act = batch_tensors(seqs)
    lp, dist, _ = token_logprobs(policy, ids, att, pos, keep_dist=alpha > 0)
    with torch.no_grad():
        rlp, rdist, _ = token_logprobs(ref, ids, att, pos, keep_dist=alpha > 0)
    rho = (lp - rlp) * act
    kl = (dist.exp() * (dist - rdist)).sum(-1) * act if alpha > 0 else torch.zeros_like(rho)
    v = critic(ids, att, pos)[:, :-1]
    r = torch.tensor(rewards, device=DEVICE).unsqueeze(1)
    rd = rho.detach()
    incl = rd.flip(1).cumsum(1).flip(1)  # Σ_{i>=t}
    excl = incl - rd
    n = act.sum(1).clamp(min=1)
    vloss = ((((v - r + beta * incl) ** 2) * act).sum(1) / n).mean()
    ploss = ((((v.detach() - r + beta * rho + beta * excl) ** 2) * act).sum(1) / n).mean()
    ploss = ploss + alpha * ((kl * act).sum(1) / n).mean()
    return ploss, vloss


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--batch", required=True)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--precision", default="f32", choices=["f32", "bf16", "f16"])
    a = ap.parse_args()
    global DEVICE
    DEVICE = torch.device(a.device)
    cuda = DEVICE.type == "cuda"
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    b = json.load(open(a.batch))
    # transformers 4.56 renamed `torch_dtype` to `dtype`.
    new = tuple(int(x) for x in transformers.__version__.split(".")[:2]) >= (4, 56)
    dtype = {"dtype" if new else "torch_dtype": torch.float32}
    policy = AutoModelForCausalLM.from_pretrained(a.model, attn_implementation="eager", **dtype).to(DEVICE)
    ref = copy.deepcopy(policy).eval()
    for p in ref.parameters():
        p.requires_grad_(False)
    seqs = [s for e in b["examples"] for s in e["seqs"]]
    rewards = [e["reward"] for e in b["examples"]]
    tokens = sum(len(s["tokens"]) - s["prompt_len"] for s in seqs)
    critic = Critic(copy.deepcopy(policy)).to(DEVICE) if b["algo"] == "oreo" else None
    opt = torch.optim.AdamW(policy.parameters(), lr=1e-5, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.0)
    vopt = torch.optim.AdamW(critic.parameters(), lr=1e-5, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.0) if critic else None
    times, losses = [], []
    low = {"bf16": torch.bfloat16, "f16": torch.float16}.get(a.precision)
    # Autocast runs the products in the low type; losses are f32 (log_softmax is on its f32
    # list). No GradScaler for f16: a few steps from a trained model do not underflow.
    cast = lambda: torch.autocast(DEVICE.type, dtype=low, enabled=low is not None)
    for _ in range(a.steps + 1):
        if cuda:
            torch.cuda.synchronize()
        t = time.perf_counter()
        with cast():
            if b["algo"] == "dpo":
                ploss, vloss = dpo_loss(policy, ref, seqs, b["beta"])
            else:
                ploss, vloss = oreo_loss(policy, ref, critic, seqs, rewards, b["beta"], b["alpha"])
        losses.append({"policy": ploss.item(), "value": vloss.item() if vloss is not None else None})
        if vloss is not None:
            vopt.zero_grad()
            vloss.backward()
            torch.nn.utils.clip_grad_norm_(critic.parameters(), 1.0)
            vopt.step()
        opt.zero_grad()
        ploss.backward()
        torch.nn.utils.clip_grad_norm_(policy.parameters(), 1.0)
        opt.step()
        if cuda:
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t)
    mean = sum(times[1:]) / max(1, len(times) - 1)
    where = f"CUDA, {torch.cuda.get_device_name()}" if cuda else f"CPU, {a.threads} threads"
    peak = torch.cuda.max_memory_allocated() / 2**20 if cuda else None
    print(json.dumps({"impl": f"PyTorch {torch.__version__} ({where}, {a.precision})", "step_s": mean, "peak_allocated_mib": peak, "tokens_per_step": tokens,
                      "tokens_per_s": tokens / mean, "losses": losses, "step_times": times}))


if __name__ == "__main__":
    main()
